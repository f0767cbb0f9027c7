//go:build unix

package artifact

import "syscall"

// syncFS flushes written files to disk with one sync(2) instead of an fsync
// per extracted file, which would make unpacking a node_modules tree take
// minutes. syncfs(2) would limit it to dir's file system, but the frozen
// syscall package lacks it on amd64 and x/sys is not among the project's
// libraries.
func syncFS(dir string) error {
	syscall.Sync()
	return nil
}
