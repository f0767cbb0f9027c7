// Package artifact moves an app's directory from a developer's machine to
// the directory its processes run in: Pack (CLI side) turns the directory
// into a deterministic gzip'd tar, a Store on the server keeps archives by
// their sha256 digest, and Unpack extracts one, atomically, where a release
// runs.
//
// An archive comes from the network, so nothing in it is trusted: Put
// refuses one with absolute paths, "..", symlinks leading out of the tree,
// paths through symlinks, or anything but files, directories and symlinks;
// Unpack extracts through an os.Root, which cannot be led out of the
// destination even by an archive that bypassed Put.
package artifact

import (
	"errors"
	"fmt"
)

var (
	// ErrTooLarge: the directory or archive exceeds the size limit.
	ErrTooLarge = errors.New("artifact too large")
	// ErrNotFound: no archive with that digest is stored.
	ErrNotFound = errors.New("artifact not found")
	// ErrUnsafePath: an entry would land outside the tree, goes through a
	// symlink, or is not a file, directory or symlink.
	ErrUnsafePath = errors.New("unsafe path in artifact")
)

// expandFactor bounds how much an archive Put accepts may grow when
// unpacked, as a multiple of its compressed limit, so a small archive cannot
// fill the disk. An honest archive made by Pack with the same limit stays
// far below it: Pack caps the uncompressed size at the limit itself.
const expandFactor = 16

// maxEntries bounds the number of entries of an archive, so that checking
// one keeps its bookkeeping in reasonable memory.
const maxEntries = 1 << 20

// markerName is the file Unpack writes last into a complete extraction; it
// holds the archive's digest.
const markerName = ".skiff-unpacked"

// isDigest reports whether s is a sha256 digest in lowercase hex, the only
// names the store gives archives; anything else could name a path.
func isDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func checkDigest(d string) error {
	if !isDigest(d) {
		return fmt.Errorf("artifact digest %q is not 64 lowercase hex characters", d)
	}
	return nil
}

// formatSize renders a byte count for messages.
func formatSize(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.4g %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
