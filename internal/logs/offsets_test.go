package logs

import (
	"maps"
	"os"
	"path/filepath"
	"testing"
)

func TestOffsetsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "offsets.json")

	got, err := loadOffsets(path)
	if err != nil || len(got) != 0 {
		t.Fatalf("missing file: %v, %v; want empty, nil", got, err)
	}
	want := map[string]offsetEntry{
		"web-1": {App: "web", Release: 3, Path: "/var/lib/skiff/raw/web-1.log", Offset: 1234, Inode: 99},
		"api-1": {App: "api", Release: 1, Path: "/raw/api-1.log"},
	}
	for range 2 { // the second save replaces the first
		if err := saveOffsets(path, want); err != nil {
			t.Fatal(err)
		}
	}
	got, err = loadOffsets(path)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("loaded %v, want %v", got, want)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Errorf("dir holds %d entries, want only offsets.json (no temp files left)", len(ents))
	}
}
