package artifact

import (
	"archive/tar"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// packEntry is one path Pack will write.
type packEntry struct {
	rel    string // slash-separated, relative to the app directory
	mode   fs.FileMode
	size   int64
	target string // symlinks only
}

// Pack writes a gzip'd tar of dir to w: regular files, directories and
// symlinks (kept as links, and refused if they lead out of dir), with their
// permission bits and without owners. It leaves out .git and whatever
// dir/.skiffignore lists. It fails with an error wrapping ErrTooLarge, before
// writing anything, once the files add up to more than limit bytes
// (limit <= 0: no limit). The output is deterministic (sorted entries, zero
// times), so the same directory always has the same digest.
func Pack(w io.Writer, dir string, limit int64) error {
	entries, err := scan(dir, limit)
	if err != nil {
		return err
	}

	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	defer root.Close()

	// No name, zero time: a deterministic header. BestSpeed packs a Go
	// binary several times faster than the default level for a few
	// percent more bytes; deploys wait on it, and uploads are on a LAN.
	gz, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return err
	}
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		if err := writeEntry(tw, root, e); err != nil {
			return fmt.Errorf("pack %s: %w", dir, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	if err := gz.Close(); err != nil {
		return fmt.Errorf("pack %s: %w", dir, err)
	}
	return nil
}

// scan lists what Pack writes, in order, and checks it as a whole first, so
// that a bad directory writes nothing.
func scan(dir string, limit int64) ([]packEntry, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("pack: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("pack: %s is not a directory", dir)
	}
	var rules ignoreRules
	if f, err := os.Open(filepath.Join(dir, ignoreFile)); err == nil {
		rules, err = parseIgnore(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("pack %s: %w", dir, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}

	var entries []packEntry
	links := map[string]string{}
	var total int64
	// WalkDir visits in lexical order, which makes the archive deterministic.
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		// .git may be a directory or, in worktrees and submodules, a file.
		if d.Name() == ".git" || rel == markerName || rules.match(rel, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		e := packEntry{rel: rel, mode: info.Mode()}
		switch {
		case d.IsDir():
		case d.Type().IsRegular():
			e.size = info.Size()
			total += e.size
			if limit > 0 && total > limit {
				return fmt.Errorf("%w: its files add up to more than the %s limit; leave files out by listing them in %s, one pattern per line (e.g. node_modules/ or *.log)",
					ErrTooLarge, formatSize(limit), filepath.Join(dir, ignoreFile))
			}
		case d.Type()&fs.ModeSymlink != 0:
			if e.target, err = os.Readlink(p); err != nil {
				return err
			}
			links[rel] = filepath.ToSlash(e.target)
		default:
			return fmt.Errorf("%s is a %s; only files, directories and symlinks can be deployed: delete it or list it in %s",
				rel, modeName(d.Type()), ignoreFile)
		}
		entries = append(entries, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("pack %s: %w", dir, err)
	}
	if err := checkLinks(links); err != nil {
		return nil, fmt.Errorf("pack %s: %w; replace it or list it in %s", dir, err, ignoreFile)
	}
	return entries, nil
}

func modeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	default:
		return "special file"
	}
}

// epoch is the time every entry carries, so that touching a file does not
// change the digest.
var epoch = time.Unix(0, 0)

func writeEntry(tw *tar.Writer, root *os.Root, e packEntry) error {
	h := &tar.Header{
		Name:    e.rel,
		Mode:    int64(e.mode.Perm()),
		ModTime: epoch,
	}
	switch {
	case e.mode.IsDir():
		h.Typeflag = tar.TypeDir
		h.Name += "/"
		return tw.WriteHeader(h)
	case e.mode&fs.ModeSymlink != 0:
		h.Typeflag = tar.TypeSymlink
		h.Linkname = filepath.ToSlash(e.target)
		return tw.WriteHeader(h)
	}
	h.Typeflag = tar.TypeReg
	h.Size = e.size
	// Through the root: should the file have become a symlink since the
	// scan, it still cannot lead out of the directory.
	f, err := root.Open(filepath.FromSlash(e.rel))
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(h); err != nil {
		return err
	}
	n, err := io.Copy(tw, io.LimitReader(f, e.size))
	if err != nil {
		return fmt.Errorf("read %s: %w", e.rel, err)
	}
	if n != e.size {
		return fmt.Errorf("%s shrank from %d to %d bytes while it was packed; try again", e.rel, e.size, n)
	}
	return nil
}
