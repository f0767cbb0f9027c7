package artifact

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func put(t *testing.T, s *Store, archive []byte) string {
	t.Helper()
	d, err := s.Put(bytes.NewReader(archive), 0)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// leftovers lists the temporary directories Unpack left beside dest.
func leftovers(t *testing.T, dest string) []string {
	t.Helper()
	des, err := os.ReadDir(filepath.Dir(dest))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range des {
		if d.Name() != filepath.Base(dest) {
			names = append(names, d.Name())
		}
	}
	return names
}

func TestUnpackIdempotent(t *testing.T) {
	s, _ := newStore(t)
	d := put(t, s, craft(t, entry{name: "app.txt", data: "v1"}))
	dest := filepath.Join(t.TempDir(), "rel")
	if err := s.Unpack(d, dest); err != nil {
		t.Fatal(err)
	}
	// A complete extraction is kept as is: a file added since survives.
	if err := os.WriteFile(filepath.Join(dest, "written-by-app"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Unpack(d, dest); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dest, "written-by-app")); err != nil {
		t.Errorf("second Unpack extracted again: %v", err)
	}
	if l := leftovers(t, dest); len(l) != 0 {
		t.Errorf("left behind %v", l)
	}
}

func TestUnpackConcurrent(t *testing.T) {
	s, _ := newStore(t)
	var files []entry
	for i := range 50 {
		files = append(files, entry{name: "dir/f" + strings.Repeat("x", i), data: strings.Repeat("y", i*100)})
	}
	d := put(t, s, craft(t, files...))
	dest := filepath.Join(t.TempDir(), "rel")

	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { errs[i] = s.Unpack(d, dest) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Unpack %d: %v", i, err)
		}
	}
	if !complete(dest, d) {
		t.Fatal("dest is not a complete extraction")
	}
	des, err := os.ReadDir(filepath.Join(dest, "dir"))
	if err != nil || len(des) != 50 {
		t.Errorf("dest/dir holds %d entries (%v), want 50", len(des), err)
	}
	if l := leftovers(t, dest); len(l) != 0 {
		t.Errorf("left behind %v", l)
	}
}

func TestUnpackReplacesOtherArtifact(t *testing.T) {
	s, _ := newStore(t)
	d1 := put(t, s, craft(t, entry{name: "old.txt", data: "old"}))
	d2 := put(t, s, craft(t, entry{name: "new.txt", data: "new"}))
	dest := filepath.Join(t.TempDir(), "rel")
	if err := s.Unpack(d1, dest); err != nil {
		t.Fatal(err)
	}
	if err := s.Unpack(d2, dest); err != nil {
		t.Fatal(err)
	}
	if !complete(dest, d2) {
		t.Error("dest does not hold the second artifact")
	}
	if _, err := os.Stat(filepath.Join(dest, "old.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("old.txt still there: %v", err)
	}
	if l := leftovers(t, dest); len(l) != 0 {
		t.Errorf("left behind %v", l)
	}
}

func TestUnpackLeavesForeignDirectory(t *testing.T) {
	s, _ := newStore(t)
	d := put(t, s, craft(t, entry{name: "a", data: "x"}))
	dest := filepath.Join(t.TempDir(), "rel")
	if err := os.Mkdir(dest, 0o755); err != nil { // not made by Unpack
		t.Fatal(err)
	}
	mine := filepath.Join(dest, "precious")
	if err := os.WriteFile(mine, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := s.Unpack(d, dest)
	if err == nil || !strings.Contains(err.Error(), "is not an unpacked artifact") {
		t.Fatalf("err = %v, want a refusal", err)
	}
	if b, err := os.ReadFile(mine); err != nil || string(b) != "keep" {
		t.Errorf("foreign file now %q, %v", b, err)
	}
	if l := leftovers(t, dest); len(l) != 0 {
		t.Errorf("left behind %v", l)
	}

	// An empty directory, though, is simply filled.
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.Unpack(d, empty); err != nil {
		t.Errorf("Unpack into an empty directory: %v", err)
	}
}

func TestUnpackMissingAndDamaged(t *testing.T) {
	s, root := newStore(t)
	missing := sum([]byte("nothing"))
	dest := filepath.Join(t.TempDir(), "rel")
	if err := s.Unpack(missing, dest); !errors.Is(err, ErrNotFound) {
		t.Errorf("Unpack of a missing digest: err = %v, want ErrNotFound", err)
	}

	d := put(t, s, craft(t, entry{name: "a", data: strings.Repeat("data ", 1000)}))
	p := filepath.Join(root, d+".tar.gz")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	err = s.Unpack(d, dest)
	if err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Unpack of a damaged archive: err = %v", err)
	}
	if _, err := os.Stat(dest); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed Unpack created dest: %v", err)
	}
	if l := leftovers(t, dest); len(l) != 0 {
		t.Errorf("left behind %v", l)
	}
}

// TestUnpackConfined plants an escaping archive in the store behind Put's
// back: Unpack must still not write outside dest.
func TestUnpackConfined(t *testing.T) {
	s, root := newStore(t)
	base := t.TempDir()
	dest := filepath.Join(base, "rel")
	// A link climbing out of dest to its parent, then a file through it.
	archive := craft(t,
		entry{name: "up", typeflag: tar.TypeSymlink, linkname: ".."},
		entry{name: "up/escaped", data: "x"},
	)
	d := sum(archive)
	if err := os.WriteFile(filepath.Join(root, d+".tar.gz"), archive, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Unpack(d, dest); err == nil {
		t.Fatal("Unpack followed a symlink out of dest")
	}
	if _, err := os.Stat(filepath.Join(base, "escaped")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a file was written outside dest: %v", err)
	}
}
