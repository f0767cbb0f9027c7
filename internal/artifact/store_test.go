package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// entry is one tar entry of a crafted archive.
type entry struct {
	name     string
	typeflag byte
	linkname string
	data     string
	mode     int64
}

// craft builds a gzip'd tar by hand, as an attacker would.
func craft(t *testing.T, entries ...entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typeflag, Linkname: e.linkname, Mode: e.mode, Size: int64(len(e.data))}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag != tar.TypeReg {
			h.Size = 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(e.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "artifacts")
	s, err := NewStore(root)
	if err != nil {
		t.Fatal(err)
	}
	return s, root
}

// stored lists the files in the store's root, temporary ones included.
func stored(t *testing.T, root string) []string {
	t.Helper()
	des, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range des {
		names = append(names, d.Name())
	}
	return names
}

func TestPutRejectsUnsafe(t *testing.T) {
	gzipOf := func(b []byte) []byte {
		var buf bytes.Buffer
		gz := gzip.NewWriter(&buf)
		gz.Write(b)
		gz.Close()
		return buf.Bytes()
	}
	good := craft(t, entry{name: "a.txt", data: "hello"})

	cases := []struct {
		name    string
		archive []byte
		unsafe  bool   // the error wraps ErrUnsafePath
		want    string // and holds this
	}{
		{name: "parent path", archive: craft(t, entry{name: "../evil", data: "x"}), unsafe: true, want: `"../evil" climbs out`},
		{name: "parent inside path", archive: craft(t, entry{name: "a/../../evil", data: "x"}), unsafe: true, want: "climbs out"},
		{name: "absolute path", archive: craft(t, entry{name: "/etc/evil", data: "x"}), unsafe: true, want: "absolute path"},
		{
			name: "symlink to /etc then a file through it",
			archive: craft(t,
				entry{name: "etc", typeflag: tar.TypeSymlink, linkname: "/etc"},
				entry{name: "etc/evil", data: "x"}),
			unsafe: true, want: `symlink "etc" points to the absolute path "/etc"`,
		},
		{
			name:    "relative symlink out",
			archive: craft(t, entry{name: "a/up", typeflag: tar.TypeSymlink, linkname: "../../x"}),
			unsafe:  true, want: "leads outside the app directory",
		},
		{
			name: "symlink out through another symlink",
			archive: craft(t,
				entry{name: "up", typeflag: tar.TypeSymlink, linkname: "self/.."},
				entry{name: "self", typeflag: tar.TypeSymlink, linkname: "."}),
			unsafe: true, want: `symlink "up" -> "self/.." leads outside the app directory`,
		},
		{
			name: "file through an in-tree symlink",
			archive: craft(t,
				entry{name: "d/", typeflag: tar.TypeDir},
				entry{name: "l", typeflag: tar.TypeSymlink, linkname: "d"},
				entry{name: "l/x", data: "x"}),
			unsafe: true, want: `"l/x" lies under the symlink "l"`,
		},
		{name: "hard link", archive: craft(t, entry{name: "a", data: "x"}, entry{name: "b", typeflag: tar.TypeLink, linkname: "a"}), unsafe: true, want: "hard link"},
		{name: "character device", archive: craft(t, entry{name: "null", typeflag: tar.TypeChar}), unsafe: true, want: "character device"},
		{name: "block device", archive: craft(t, entry{name: "sda", typeflag: tar.TypeBlock}), unsafe: true, want: "block device"},
		{name: "fifo", archive: craft(t, entry{name: "p", typeflag: tar.TypeFifo}), unsafe: true, want: "named pipe"},
		{name: "duplicate entry", archive: craft(t, entry{name: "a", data: "1"}, entry{name: "./a", data: "2"}), unsafe: true, want: "twice"},
		{name: "reserved marker name", archive: craft(t, entry{name: markerName, data: "x"}), unsafe: true, want: "reserves"},
		{name: "unclean path", archive: craft(t, entry{name: "a//b", data: "x"}), unsafe: true, want: "not a clean relative path"},
		{name: "not gzip", archive: []byte("PK\x03\x04 a zip file"), want: "not a gzip'd tar archive"},
		{name: "gzip but not tar", archive: gzipOf(bytes.Repeat([]byte("not a tar header "), 64)), want: "malformed tar archive"},
		{name: "truncated", archive: good[:len(good)-10], want: "malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, root := newStore(t)
			_, err := s.Put(bytes.NewReader(tc.archive), 1<<20)
			if err == nil {
				t.Fatal("Put accepted the archive")
			}
			if tc.unsafe != errors.Is(err, ErrUnsafePath) {
				t.Errorf("errors.Is(err, ErrUnsafePath) = %v, want %v (err: %v)", !tc.unsafe, tc.unsafe, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %q, want it to contain %q", err, tc.want)
			}
			if names := stored(t, root); len(names) != 0 {
				t.Errorf("a refused archive left %v in the store", names)
			}
		})
	}
}

func TestPutAcceptsTarToolLayout(t *testing.T) {
	// `tar czf a.tgz -C dir .` writes "./" and "./name" entries.
	s, _ := newStore(t)
	archive := craft(t,
		entry{name: "./", typeflag: tar.TypeDir, mode: 0o755},
		entry{name: "./bin/", typeflag: tar.TypeDir, mode: 0o755},
		entry{name: "./bin/run", data: "run", mode: 0o755},
		entry{name: "./bin/alias", typeflag: tar.TypeSymlink, linkname: "run"},
	)
	digest, err := s.Put(bytes.NewReader(archive), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	dest := filepath.Join(t.TempDir(), "app")
	if err := s.Unpack(digest, dest); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dest, "bin", "alias")); err != nil || string(b) != "run" {
		t.Errorf("bin/alias reads %q, %v", b, err)
	}
}

func TestPutLimits(t *testing.T) {
	// 1 MiB of zeros packs into about 1 KiB.
	bomb := craft(t, entry{name: "zeros", data: strings.Repeat("\x00", 1<<20)})
	cases := []struct {
		name    string
		archive []byte
		limit   int64
		want    string // "" when accepted
	}{
		{name: "compressed size over the limit", archive: craft(t, entry{name: "a", data: "x"}), limit: 20, want: "larger than the 20 B limit"},
		{name: "unpacks to too much", archive: bomb, limit: 16 << 10, want: "unpacks to more than 256 KiB"},
		{name: "expansion within bounds", archive: bomb, limit: 128 << 10},
		{name: "no limit", archive: bomb, limit: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, root := newStore(t)
			digest, err := s.Put(bytes.NewReader(tc.archive), tc.limit)
			if tc.want == "" {
				if err != nil || !s.Has(digest) {
					t.Fatalf("Put = %s, %v; want the archive stored", digest, err)
				}
				return
			}
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrTooLarge saying %q", err, tc.want)
			}
			if names := stored(t, root); len(names) != 0 {
				t.Errorf("a refused archive left %v in the store", names)
			}
		})
	}
}

func TestHasRemove(t *testing.T) {
	s, root := newStore(t)
	archive := craft(t, entry{name: "a", data: "x"})
	d := sum(archive)
	if s.Has(d) {
		t.Fatal("Has before Put")
	}
	for range 2 { // storing twice is harmless
		got, err := s.Put(bytes.NewReader(archive), 0)
		if err != nil || got != d {
			t.Fatalf("Put = %s, %v; want %s", got, err, d)
		}
	}
	if names := stored(t, root); len(names) != 1 || names[0] != d+".tar.gz" {
		t.Errorf("store holds %v, want only %s.tar.gz", names, d)
	}
	if !s.Has(d) {
		t.Fatal("Has after Put is false")
	}
	if err := s.Remove(d); err != nil {
		t.Fatal(err)
	}
	if s.Has(d) {
		t.Error("Has after Remove")
	}
	if err := s.Remove(d); err != nil {
		t.Errorf("second Remove: %v", err)
	}

	for _, bad := range []string{"", "../../etc/passwd", strings.Repeat("A", 64), d[:63]} {
		if s.Has(bad) {
			t.Errorf("Has(%q) = true", bad)
		}
		if err := s.Remove(bad); err == nil {
			t.Errorf("Remove(%q) succeeded", bad)
		}
		if err := s.Unpack(bad, t.TempDir()); err == nil || !strings.Contains(err.Error(), "not 64 lowercase hex") {
			t.Errorf("Unpack(%q): err = %v", bad, err)
		}
	}
}
