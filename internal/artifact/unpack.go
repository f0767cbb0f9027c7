package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Unpack extracts the archive with this digest into dest, unless dest
// already holds a complete extraction of it. Extraction goes to a sibling
// temporary directory that is renamed to dest once complete and synced, so
// dest is either absent, the old content, or the whole new tree; several
// callers may unpack to the same dest at once. dest gets mode 0755, every
// directory 0755, every file its own permission bits plus read for all.
//
// If dest holds an extraction of another archive (an app destroyed and
// deployed again) it is replaced. Anything else already at dest is left
// alone and reported, so a wrong dest cannot wipe unrelated data.
func (s *Store) Unpack(digest, dest string) error {
	if err := checkDigest(digest); err != nil {
		return fmt.Errorf("unpack artifact: %w", err)
	}
	if complete(dest, digest) {
		return nil
	}
	if !s.Has(digest) {
		return fmt.Errorf("unpack artifact: %w: %s", ErrNotFound, digest)
	}

	parent, base := filepath.Split(filepath.Clean(dest))
	if parent == "" {
		parent = "."
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return fmt.Errorf("unpack artifact: %w", err)
	}
	tmp, err := os.MkdirTemp(parent, base+".tmp-")
	if err != nil {
		return fmt.Errorf("unpack artifact: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op once renamed
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("unpack artifact: %w", err)
	}
	if err := s.extract(digest, tmp); err != nil {
		return fmt.Errorf("unpack artifact %s to %s: %w", digest, dest, err)
	}
	// The marker must not reach the disk before the files it vouches for.
	if err := syncFS(tmp); err != nil {
		return fmt.Errorf("unpack artifact: %w", err)
	}
	if err := writeMarker(tmp, digest); err != nil {
		return fmt.Errorf("unpack artifact: %w", err)
	}

	if err := install(tmp, dest, digest); err != nil {
		return fmt.Errorf("unpack artifact %s to %s: %w", digest, dest, err)
	}
	if err := syncDir(parent); err != nil {
		return fmt.Errorf("unpack artifact: %w", err)
	}
	return nil
}

// complete reports whether dir holds a finished extraction of digest.
func complete(dir, digest string) bool {
	b, err := os.ReadFile(filepath.Join(dir, markerName))
	return err == nil && string(b) == digest
}

func writeMarker(dir, digest string) error {
	f, err := os.OpenFile(filepath.Join(dir, markerName), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(digest); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil { // whatever the umask
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// install renames the finished tmp to dest, replacing an empty directory
// or an extraction of another archive that is in the way.
func install(tmp, dest, digest string) error {
	err := os.Rename(tmp, dest)
	if err == nil {
		return nil
	}
	if complete(dest, digest) {
		return nil // a concurrent Unpack got there first
	}
	info, lerr := os.Lstat(dest)
	if lerr != nil || !info.IsDir() {
		return err
	}
	// os.Rename refuses to replace any directory, even an empty one; rmdir
	// removes only an empty one.
	if os.Remove(dest) == nil {
		return renameOrRaced(tmp, dest, digest)
	}
	if complete(dest, digest) {
		return nil
	}
	if !replaceable(dest) {
		return fmt.Errorf("%s already exists and is not an unpacked artifact; remove it or choose another directory", dest)
	}
	// Move the old tree aside and remove it once the new one is in place,
	// so dest lacks a complete tree only between two renames.
	old, err := os.MkdirTemp(filepath.Dir(dest), filepath.Base(dest)+".old-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(old)
	aside := filepath.Join(old, "tree")
	if err := os.Rename(dest, aside); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return renameOrRaced(tmp, dest, digest)
}

// renameOrRaced renames tmp to dest; losing the race to a concurrent Unpack
// of the same digest is success.
func renameOrRaced(tmp, dest, digest string) error {
	if err := os.Rename(tmp, dest); err != nil {
		if complete(dest, digest) {
			return nil
		}
		return err
	}
	return nil
}

// replaceable reports whether dest is a directory Unpack made (it has a
// marker) and may therefore replace.
func replaceable(dest string) bool {
	_, err := os.Lstat(filepath.Join(dest, markerName))
	return err == nil
}

// extract writes the archive's tree into dir. Every write goes through an
// os.Root, so even an archive that never passed Put cannot write outside
// dir, through a symlink or otherwise. The archive's digest is checked as
// it is read, so a file damaged on disk is not unpacked.
func (s *Store) extract(digest, dir string) error {
	f, err := s.open(digest)
	if err != nil {
		return err
	}
	defer f.Close()
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()

	h := sha256.New()
	gz, err := gzip.NewReader(io.TeeReader(f, h))
	if err != nil {
		return fmt.Errorf("stored archive is damaged: %w", err)
	}
	tr := tar.NewReader(gz)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("stored archive is damaged: %w", err)
		}
		name, skip, err := entryName(hdr)
		if err != nil {
			return err
		}
		if skip {
			continue
		}
		if err := writeTarEntry(root, name, hdr, tr); err != nil {
			return err
		}
	}
	// Read the rest (tar padding, gzip trailer) so the digest covers it all.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return fmt.Errorf("stored archive is damaged: %w", err)
	}
	if _, err := io.Copy(h, f); err != nil {
		return err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != digest {
		return fmt.Errorf("stored archive is damaged: its digest is now %s", got)
	}
	return nil
}

func writeTarEntry(root *os.Root, name string, hdr *tar.Header, r io.Reader) error {
	if dir := path.Dir(name); dir != "." {
		if err := mkdirs(root, dir); err != nil {
			return err
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		return mkdirs(root, name)
	case tar.TypeSymlink:
		return root.Symlink(hdr.Linkname, name)
	}
	// O_EXCL: an entry never replaces an earlier one (a symlink, say).
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", name, err)
	}
	// Chmod on the open file is not subject to the umask.
	if err := f.Chmod(fs.FileMode(hdr.Mode)&fs.ModePerm | 0o444); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// mkdirs makes dir and its parents 0755 regardless of the umask; an
// existing directory is made 0755 too.
func mkdirs(root *os.Root, dir string) error {
	var prefix bytes.Buffer
	for _, seg := range strings.Split(dir, "/") {
		if prefix.Len() > 0 {
			prefix.WriteByte('/')
		}
		prefix.WriteString(seg)
		p := prefix.String()
		if err := root.Mkdir(p, 0o755); err != nil {
			if !errors.Is(err, fs.ErrExist) {
				return err
			}
			info, err := root.Lstat(p)
			if err != nil {
				return err
			}
			if !info.IsDir() {
				return fmt.Errorf("%w: %s is not a directory", ErrUnsafePath, p)
			}
		}
		if err := root.Chmod(p, 0o755); err != nil {
			return err
		}
	}
	return nil
}
