package artifact

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// file describes one path of a test tree.
type file struct {
	mode   fs.FileMode // permission bits, plus fs.ModeDir or fs.ModeSymlink
	data   string      // file content
	target string      // symlink target
}

// writeTree creates files under dir.
func writeTree(t *testing.T, dir string, files map[string]file) {
	t.Helper()
	for name, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		switch {
		case f.mode&fs.ModeDir != 0:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, f.mode.Perm()); err != nil {
				t.Fatal(err)
			}
		case f.mode&fs.ModeSymlink != 0:
			if err := os.Symlink(f.target, p); err != nil {
				t.Fatal(err)
			}
		default:
			if err := os.WriteFile(p, []byte(f.data), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, f.mode.Perm()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// readTree describes what is under dir, as writeTree takes it.
func readTree(t *testing.T, dir string) map[string]file {
	t.Helper()
	got := map[string]file{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		f := file{mode: info.Mode() & (fs.ModePerm | fs.ModeDir | fs.ModeSymlink)}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			f.mode = fs.ModeSymlink
			f.target, err = os.Readlink(p)
		case d.Type().IsRegular():
			var b []byte
			b, err = os.ReadFile(p)
			f.data = string(b)
		}
		got[filepath.ToSlash(rel)] = f
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func pack(t *testing.T, dir string, limit int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := Pack(&buf, dir, limit); err != nil {
		t.Fatalf("Pack: %v", err)
	}
	return buf.Bytes()
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// listArchive returns the names in an archive and checks every header
// carries no owner and no time.
func listArchive(t *testing.T, b []byte) []string {
	t.Helper()
	gz, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("entry %s carries owner %d/%d %q/%q or time %v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
		names = append(names, h.Name)
	}
	return names
}

func TestRoundTrip(t *testing.T) {
	// A strict umask must not change the modes Unpack promises.
	old := syscall.Umask(0o077)
	t.Cleanup(func() { syscall.Umask(old) })

	src := t.TempDir()
	writeTree(t, src, map[string]file{
		"run.sh":         {mode: 0o755, data: "#!/bin/sh\necho hi\n"},
		"secret.txt":     {mode: 0o600, data: "only me"},
		"lib/a/b.txt":    {mode: 0o644, data: "deep"},
		"lib/empty":      {mode: fs.ModeDir | 0o700},
		"link-to-b":      {mode: fs.ModeSymlink, target: "lib/a/b.txt"},
		"lib/a/up":       {mode: fs.ModeSymlink, target: "../../run.sh"},
		"dangling":       {mode: fs.ModeSymlink, target: "not/there"},
		".git/HEAD":      {mode: 0o644, data: "ref: refs/heads/main"},
		"sub/.git":       {mode: 0o644, data: "gitdir: ../.git/modules/sub"},
		"sub/code.go":    {mode: 0o644, data: "package sub"},
		"empty-file":     {mode: 0o644},
		"spaces in name": {mode: 0o644, data: "ok"},
		"ünïcödé/ß.txt":  {mode: 0o644, data: "utf-8"},
	})

	archive := pack(t, src, 1<<20)
	names := listArchive(t, archive)
	for _, n := range names {
		if strings.Contains(n, ".git") {
			t.Errorf("archive holds %s", n)
		}
	}

	s, err := NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	digest, err := s.Put(bytes.NewReader(archive), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if digest != sum(archive) {
		t.Errorf("digest = %s, want the sha256 of the archive %s", digest, sum(archive))
	}
	dest := filepath.Join(t.TempDir(), "releases", "hello", "1")
	if err := s.Unpack(digest, dest); err != nil {
		t.Fatal(err)
	}

	want := map[string]file{
		"run.sh":         {mode: 0o755, data: "#!/bin/sh\necho hi\n"},
		"secret.txt":     {mode: 0o644, data: "only me"}, // made world-readable
		"lib":            {mode: fs.ModeDir | 0o755},
		"lib/a":          {mode: fs.ModeDir | 0o755},
		"lib/a/b.txt":    {mode: 0o644, data: "deep"},
		"lib/empty":      {mode: fs.ModeDir | 0o755},
		"link-to-b":      {mode: fs.ModeSymlink, target: "lib/a/b.txt"},
		"lib/a/up":       {mode: fs.ModeSymlink, target: "../../run.sh"},
		"dangling":       {mode: fs.ModeSymlink, target: "not/there"},
		"sub":            {mode: fs.ModeDir | 0o755},
		"sub/code.go":    {mode: 0o644, data: "package sub"},
		"empty-file":     {mode: 0o644},
		"spaces in name": {mode: 0o644, data: "ok"},
		"ünïcödé":        {mode: fs.ModeDir | 0o755},
		"ünïcödé/ß.txt":  {mode: 0o644, data: "utf-8"},
		markerName:       {mode: 0o644, data: digest},
	}
	if got := readTree(t, dest); !reflect.DeepEqual(got, want) {
		t.Errorf("unpacked tree:\n%v\nwant:\n%v", got, want)
	}
	info, err := os.Stat(dest)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o755 {
		t.Errorf("dest mode = %v, want 0755", info.Mode().Perm())
	}
}

func TestPackDeterministic(t *testing.T) {
	files := map[string]file{
		"b.txt":     {mode: 0o644, data: "b"},
		"a/x.txt":   {mode: 0o644, data: "x"},
		"a/link":    {mode: fs.ModeSymlink, target: "x.txt"},
		"z/run":     {mode: 0o755, data: "run"},
		"a/b/c/d.e": {mode: 0o600, data: "deep"},
	}
	one, two := t.TempDir(), t.TempDir()
	writeTree(t, one, files)
	writeTree(t, two, files)
	// Different times and locations must not matter.
	past := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(filepath.Join(two, "b.txt"), past, past); err != nil {
		t.Fatal(err)
	}

	first := pack(t, one, 0)
	if again := pack(t, one, 0); !bytes.Equal(first, again) {
		t.Error("packing the same directory twice gave different bytes")
	}
	if other := pack(t, two, 0); sum(other) != sum(first) {
		t.Error("a copy of the directory with other mtimes gave another digest")
	}
	if err := os.WriteFile(filepath.Join(two, "b.txt"), []byte("B"), 0o644); err != nil {
		t.Fatal(err)
	}
	if changed := pack(t, two, 0); sum(changed) == sum(first) {
		t.Error("changed content kept the digest")
	}
	if err := os.Chmod(filepath.Join(one, "b.txt"), 0o755); err != nil {
		t.Fatal(err)
	}
	if changed := pack(t, one, 0); sum(changed) == sum(first) {
		t.Error("a changed mode kept the digest")
	}
}

func TestPackSkiffignore(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]file{
		".skiffignore":               {mode: 0o644, data: "# build output\n/build\n*.log\nnode_modules/\ndocs/*.draft\n"},
		"main.go":                    {mode: 0o644, data: "package main"},
		"debug.log":                  {mode: 0o644, data: "x"},
		"sub/trace.log":              {mode: 0o644, data: "x"},
		"build/out":                  {mode: 0o644, data: "x"},
		"src/build/keep.go":          {mode: 0o644, data: "anchored pattern must not drop this"},
		"node_modules/left/index.js": {mode: 0o644, data: "x"},
		"web/node_modules/x.js":      {mode: 0o644, data: "x"},
		"node_modules.txt":           {mode: 0o644, data: "a file, not the dir"},
		"docs/a.draft":               {mode: 0o644, data: "x"},
		"docs/a.md":                  {mode: 0o644, data: "keep"},
		"docs/deeper/b.draft":        {mode: 0o644, data: "keep: docs/* spans one level"},
	})
	got := listArchive(t, pack(t, src, 0))
	want := []string{
		".skiffignore", "docs/", "docs/a.md", "docs/deeper/", "docs/deeper/b.draft",
		"main.go", "node_modules.txt", "src/", "src/build/", "src/build/keep.go", "sub/", "web/",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("archive holds\n%q\nwant\n%q", got, want)
	}
}

func TestPackLimit(t *testing.T) {
	src := t.TempDir()
	writeTree(t, src, map[string]file{
		"a": {mode: 0o644, data: strings.Repeat("a", 100)},
		"b": {mode: 0o644, data: strings.Repeat("b", 100)},
		"c": {mode: 0o644, data: strings.Repeat("c", 100)},
	})
	cases := []struct {
		name   string
		ignore string
		limit  int64
		tooBig bool
	}{
		{name: "over the limit", limit: 250, tooBig: true},
		{name: "exactly the limit", limit: 300},
		{name: "no limit", limit: 0},
		{name: "ignored files do not count", ignore: "c\n", limit: 250},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(filepath.Join(src, ".skiffignore"))
			if tc.ignore != "" {
				writeTree(t, src, map[string]file{".skiffignore": {mode: 0o644, data: tc.ignore}})
			}
			var buf bytes.Buffer
			err := Pack(&buf, src, tc.limit)
			if !tc.tooBig {
				if err != nil {
					t.Fatalf("Pack: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrTooLarge) {
				t.Fatalf("err = %v, want ErrTooLarge", err)
			}
			for _, part := range []string{"250 B", ".skiffignore"} {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("message %q does not mention %q", err, part)
				}
			}
			if buf.Len() != 0 {
				t.Errorf("Pack wrote %d bytes before failing", buf.Len())
			}
		})
	}
}

func TestPackRefuses(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]file
		want  string
	}{
		{
			name:  "absolute symlink",
			files: map[string]file{"etc": {mode: fs.ModeSymlink, target: "/etc"}},
			want:  `symlink "etc" points to the absolute path "/etc"`,
		},
		{
			name:  "symlink out of the directory",
			files: map[string]file{"a/up": {mode: fs.ModeSymlink, target: "../../secret"}},
			want:  `symlink "a/up" -> "../../secret" leads outside the app directory`,
		},
		{
			name: "symlink out through another symlink",
			files: map[string]file{
				"self": {mode: fs.ModeSymlink, target: "."},
				"up":   {mode: fs.ModeSymlink, target: "self/.."},
			},
			want: `symlink "up" -> "self/.." leads outside the app directory`,
		},
		{
			name: "symlink loop",
			files: map[string]file{
				"a": {mode: fs.ModeSymlink, target: "b"},
				"b": {mode: fs.ModeSymlink, target: "a"},
			},
			want: "symlink loop",
		},
		{
			name:  "bad .skiffignore",
			files: map[string]file{".skiffignore": {mode: 0o644, data: "!x"}},
			want:  "negation",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			writeTree(t, src, tc.files)
			var buf bytes.Buffer
			err := Pack(&buf, src, 0)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
			if buf.Len() != 0 {
				t.Errorf("Pack wrote %d bytes before failing", buf.Len())
			}
		})
	}

	t.Run("named pipe", func(t *testing.T) {
		src := t.TempDir()
		if err := syscall.Mkfifo(filepath.Join(src, "pipe"), 0o644); err != nil {
			t.Fatal(err)
		}
		err := Pack(io.Discard, src, 0)
		if err == nil || !strings.Contains(err.Error(), "pipe is a named pipe") {
			t.Fatalf("err = %v, want one naming the pipe", err)
		}
		// Listing it in .skiffignore is the way out the message gives.
		writeTree(t, src, map[string]file{".skiffignore": {mode: 0o644, data: "pipe\n"}})
		if err := Pack(io.Discard, src, 0); err != nil {
			t.Errorf("Pack with the pipe ignored: %v", err)
		}
	})
	t.Run("not a directory", func(t *testing.T) {
		p := filepath.Join(t.TempDir(), "f")
		writeTree(t, filepath.Dir(p), map[string]file{"f": {mode: 0o644}})
		if err := Pack(io.Discard, p, 0); err == nil || !strings.Contains(err.Error(), "not a directory") {
			t.Errorf("err = %v", err)
		}
	})
}
