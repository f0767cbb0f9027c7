package artifact

import (
	"archive/tar"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
)

// entryName checks one tar header and returns the entry's clean name. skip
// is true for the entry naming the archive's root ("./"), which tar tools
// write and which carries nothing.
func entryName(h *tar.Header) (name string, skip bool, err error) {
	name = h.Name
	if strings.HasPrefix(name, "/") {
		return "", false, fmt.Errorf("%w: entry %q is an absolute path", ErrUnsafePath, h.Name)
	}
	for strings.HasPrefix(name, "./") {
		name = name[2:]
	}
	name = strings.TrimSuffix(name, "/")
	if name == "" || name == "." {
		if h.Typeflag != tar.TypeDir {
			return "", false, fmt.Errorf("%w: entry %q has no name", ErrUnsafePath, h.Name)
		}
		return "", true, nil
	}
	for _, seg := range strings.Split(name, "/") {
		if seg == ".." {
			return "", false, fmt.Errorf("%w: entry %q climbs out with \"..\"", ErrUnsafePath, h.Name)
		}
	}
	if !fs.ValidPath(name) || strings.ContainsRune(name, 0) {
		return "", false, fmt.Errorf("%w: entry %q is not a clean relative path", ErrUnsafePath, h.Name)
	}
	if name == markerName {
		return "", false, fmt.Errorf("%w: entry %q uses a name skiff reserves", ErrUnsafePath, h.Name)
	}
	switch h.Typeflag {
	case tar.TypeReg, tar.TypeDir:
	case tar.TypeSymlink:
		if h.Linkname == "" {
			return "", false, fmt.Errorf("%w: symlink %q has no target", ErrUnsafePath, name)
		}
		if path.IsAbs(h.Linkname) {
			return "", false, fmt.Errorf("%w: symlink %q points to the absolute path %q", ErrUnsafePath, name, h.Linkname)
		}
	default:
		return "", false, fmt.Errorf("%w: entry %q is a %s; artifacts hold only files, directories and symlinks",
			ErrUnsafePath, name, typeName(h.Typeflag))
	}
	if h.Size < 0 {
		return "", false, fmt.Errorf("%w: entry %q has a negative size", ErrUnsafePath, name)
	}
	return name, false, nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar:
		return "character device"
	case tar.TypeBlock:
		return "block device"
	case tar.TypeFifo:
		return "named pipe"
	default:
		return fmt.Sprintf("tar entry of type %q", t)
	}
}

// treeCheck collects an archive's entries to check what only the whole
// tree shows: duplicate names, entries under a symlink, and symlinks that
// lead out of the tree.
type treeCheck struct {
	names map[string]bool
	links map[string]string // name -> target
}

func newTreeCheck() *treeCheck {
	return &treeCheck{names: map[string]bool{}, links: map[string]string{}}
}

func (c *treeCheck) add(name string, h *tar.Header) error {
	if c.names[name] {
		return fmt.Errorf("%w: entry %q appears twice", ErrUnsafePath, name)
	}
	c.names[name] = true
	if h.Typeflag == tar.TypeSymlink {
		c.links[name] = h.Linkname
	}
	return nil
}

func (c *treeCheck) check() error {
	for _, name := range slices.Sorted(maps.Keys(c.names)) {
		// A path through a symlink would be written wherever the link
		// points: the classic "symlink to /etc, then etc/passwd" attack.
		for i := strings.IndexByte(name, '/'); i >= 0; i = next(name, i) {
			if _, ok := c.links[name[:i]]; ok {
				return fmt.Errorf("%w: entry %q lies under the symlink %q", ErrUnsafePath, name, name[:i])
			}
		}
	}
	return checkLinks(c.links)
}

func next(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '/')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// maxHops bounds symlink resolution, like the kernel's limit of 40.
const maxHops = 40

// checkLinks makes sure that every symlink, resolved inside the tree (links
// maps each symlink's slash-separated path to its target), stays inside it.
// Looking at each target alone is not enough: with s -> "." a link
// l -> "s/.." looks harmless yet leads to the tree's parent.
func checkLinks(links map[string]string) error {
	// Sorted, so the same tree always reports the same link.
	for _, name := range slices.Sorted(maps.Keys(links)) {
		target := links[name]
		if path.IsAbs(target) {
			return fmt.Errorf("%w: symlink %q points to the absolute path %q; use a relative link inside the app directory", ErrUnsafePath, name, target)
		}
		hops := 0
		dir := strings.Split(path.Dir(name), "/")
		if path.Dir(name) == "." {
			dir = nil
		}
		if _, err := resolve(links, dir, target, &hops); err != nil {
			return fmt.Errorf("%w: symlink %q -> %q %s", ErrUnsafePath, name, target, err.Error())
		}
	}
	return nil
}

// resolve walks target from the directory at (segments below the root),
// following the tree's symlinks, and returns where it ends. Its errors are
// phrases that complete "symlink x -> y …".
func resolve(links map[string]string, at []string, target string, hops *int) ([]string, error) {
	if path.IsAbs(target) {
		return nil, fmt.Errorf("leads outside the app directory")
	}
	cur := append([]string(nil), at...)
	for _, seg := range strings.Split(target, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(cur) == 0 {
				return nil, fmt.Errorf("leads outside the app directory")
			}
			cur = cur[:len(cur)-1]
		default:
			cur = append(cur, seg)
			t, ok := links[strings.Join(cur, "/")]
			if !ok {
				continue
			}
			if *hops++; *hops > maxHops {
				return nil, fmt.Errorf("is part of a symlink loop")
			}
			var err error
			if cur, err = resolve(links, cur[:len(cur)-1], t, hops); err != nil {
				return nil, err
			}
		}
	}
	return cur, nil
}
