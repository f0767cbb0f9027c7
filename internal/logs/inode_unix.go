//go:build unix

package logs

import (
	"io/fs"
	"syscall"
)

// inode identifies the file behind fi, to notice a raw file that was
// replaced by a new one under the same path.
func inode(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Ino)
	}
	return 0
}
