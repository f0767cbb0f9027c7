package artifact

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Store keeps archives as <root>/<digest>.tar.gz. It is safe for concurrent
// use, also by several processes sharing root.
type Store struct {
	root string
}

// tempPrefix starts the names of archives still being received.
const tempPrefix = ".put-"

// staleTemp is how old a leftover upload must be before NewStore removes
// it; younger ones may belong to an upload in progress.
const staleTemp = time.Hour

// NewStore opens (creating it, mode 0700) the archive directory root and
// removes uploads that a crash left behind.
func NewStore(root string) (*Store, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("open artifact store: %w", err)
	}
	leftovers, err := filepath.Glob(filepath.Join(root, tempPrefix+"*"))
	if err != nil {
		return nil, fmt.Errorf("open artifact store %s: %w", root, err)
	}
	for _, p := range leftovers {
		if info, err := os.Stat(p); err == nil && time.Since(info.ModTime()) > staleTemp {
			os.Remove(p)
		}
	}
	return &Store{root: root}, nil
}

func (s *Store) path(digest string) string {
	return filepath.Join(s.root, digest+".tar.gz")
}

// Put stores an archive read from r and returns its sha256 hex digest. The
// archive may be at most limit bytes (limit <= 0: no limit) and unpack to
// at most expandFactor times that, else the error wraps ErrTooLarge. It must
// be a gzip'd tar of files, directories and symlinks that all stay inside
// the tree, else the error wraps ErrUnsafePath (or says what is malformed).
// The archive is on disk, fsynced, before Put returns.
func (s *Store) Put(r io.Reader, limit int64) (digest string, err error) {
	tmp, err := os.CreateTemp(s.root, tempPrefix+"*")
	if err != nil {
		return "", fmt.Errorf("put artifact: %w", err)
	}
	defer func() {
		if tmp != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()

	src := r
	if limit > 0 {
		src = io.LimitReader(r, limit+1)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), src)
	if err != nil {
		return "", fmt.Errorf("put artifact: receive: %w", err)
	}
	if limit > 0 && n > limit {
		return "", fmt.Errorf("put artifact: %w: the archive is larger than the %s limit; leave files out with .skiffignore",
			ErrTooLarge, formatSize(limit))
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("put artifact: %w", err)
	}
	var expanded int64
	if limit > 0 {
		expanded = limit * expandFactor
	}
	if err := verify(tmp, expanded); err != nil {
		return "", fmt.Errorf("put artifact: %w", err)
	}

	digest = hex.EncodeToString(h.Sum(nil))
	if err := tmp.Sync(); err != nil {
		return "", fmt.Errorf("put artifact: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("put artifact: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path(digest)); err != nil {
		return "", fmt.Errorf("put artifact: %w", err)
	}
	tmp = nil
	if err := syncDir(s.root); err != nil {
		return "", fmt.Errorf("put artifact: %w", err)
	}
	return digest, nil
}

// verify reads a whole archive and checks every entry, and the tree they
// make, without writing anything. maxSize bounds the unpacked size (0: no
// bound).
func verify(r io.Reader, maxSize int64) error {
	gz, err := gzip.NewReader(r)
	if err != nil {
		return fmt.Errorf("not a gzip'd tar archive: %w", err)
	}
	tr := tar.NewReader(gz)
	tree := newTreeCheck()
	var total int64
	for entries := 0; ; entries++ {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("malformed tar archive: %w", err)
		}
		if entries >= maxEntries {
			return fmt.Errorf("%w: more than %d entries", ErrTooLarge, maxEntries)
		}
		name, skip, err := entryName(h)
		if err != nil {
			return err
		}
		if skip {
			continue
		}
		if err := tree.add(name, h); err != nil {
			return err
		}
		if h.Typeflag == tar.TypeReg {
			total += h.Size
			if maxSize > 0 && total > maxSize {
				return fmt.Errorf("%w: the archive unpacks to more than %s", ErrTooLarge, formatSize(maxSize))
			}
		}
	}
	// Reading to the end checks the gzip trailer, and with it every byte.
	if _, err := io.Copy(io.Discard, gz); err != nil {
		return fmt.Errorf("malformed gzip stream: %w", err)
	}
	return tree.check()
}

// Has reports whether the archive with this digest is stored.
func (s *Store) Has(digest string) bool {
	if !isDigest(digest) {
		return false
	}
	_, err := os.Stat(s.path(digest))
	return err == nil
}

// Remove deletes an archive. Removing one that is not there is no error,
// so a garbage collector may repeat itself.
func (s *Store) Remove(digest string) error {
	if err := checkDigest(digest); err != nil {
		return fmt.Errorf("remove artifact: %w", err)
	}
	if err := os.Remove(s.path(digest)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove artifact: %w", err)
	}
	return nil
}

// open returns the stored archive, or an error wrapping ErrNotFound.
func (s *Store) open(digest string) (*os.File, error) {
	if err := checkDigest(digest); err != nil {
		return nil, err
	}
	f, err := os.Open(s.path(digest))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, digest)
	}
	return f, err
}
