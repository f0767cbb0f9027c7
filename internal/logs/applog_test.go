package logs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lineN is the text of the n-th generated line.
func lineN(n int) string { return fmt.Sprintf("line %03d", n) }

func TestRotationKeepsReadWorking(t *testing.T) {
	dir := t.TempDir()
	c := newTestCollector(t, Options{Dir: dir, MaxAppBytes: 2048})
	start(t, c)
	raw := filepath.Join(t.TempDir(), "i.log")
	c.Track("web", 1, "web-1", raw)

	const batches, perBatch = 20, 10
	var cut time.Time
	cutAt := 150 // first line written after cut
	for b := range batches {
		var sb strings.Builder
		for i := range perBatch {
			sb.WriteString(lineN(b*perBatch+i) + "\n")
		}
		if b*perBatch == cutAt {
			cut = time.Now()
		}
		appendRaw(t, raw, sb.String())
		last := lineN((b+1)*perBatch - 1)
		waitFor(t, last, func() bool {
			got := readAll(t, c, "web", Query{Tail: 1})
			return len(got) == 1 && got[0].Text == last
		})
	}

	segs, err := listSegments(filepath.Join(dir, "web"))
	if err != nil {
		t.Fatal(err)
	}
	if len(segs) != keepSegments {
		t.Fatalf("%d segments, want %d (rotated often, oldest removed)", len(segs), keepSegments)
	}
	if _, err := os.Stat(filepath.Join(dir, "web", "current.jsonl")); err != nil {
		t.Fatal(err)
	}

	// What is kept reads as one unbroken run ending with the newest line.
	all := readAll(t, c, "web", Query{})
	total := batches * perBatch
	if len(all) < perBatch || len(all) >= total {
		t.Fatalf("read %d lines, want fewer than %d (old segments removed) and more than one batch", len(all), total)
	}
	first := total - len(all)
	for i, l := range all {
		if want := lineN(first + i); l.Text != want {
			t.Fatalf("line %d = %q, want %q", i, l.Text, want)
		}
	}

	for _, tc := range []struct {
		name      string
		q         Query
		wantFirst int
	}{
		{"tail across segments", Query{Tail: 55}, total - 55},
		{"since across segments", Query{Since: cut}, cutAt},
		{"since and tail", Query{Since: cut, Tail: 5}, total - 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := readAll(t, c, "web", tc.q)
			if len(got) != total-tc.wantFirst {
				t.Fatalf("read %d lines, want %d", len(got), total-tc.wantFirst)
			}
			for i, l := range got {
				if want := lineN(tc.wantFirst + i); l.Text != want {
					t.Fatalf("line %d = %q, want %q", i, l.Text, want)
				}
			}
		})
	}
}

// A write that a crash cut short must not swallow the next record.
func TestTornRecordSkipped(t *testing.T) {
	dir := t.TempDir()
	appDir := filepath.Join(dir, "web")
	if err := os.MkdirAll(appDir, 0o750); err != nil {
		t.Fatal(err)
	}
	good := `{"time":"2024-01-01T00:00:00Z","app":"web","release":1,"instance":"web-1","text":"before"}` + "\n"
	torn := `{"time":"2024-01-01T00:00:01Z","app":"web","rel`
	if err := os.WriteFile(filepath.Join(appDir, currentName), []byte(good+torn), 0o640); err != nil {
		t.Fatal(err)
	}
	c := newTestCollector(t, Options{Dir: dir})
	start(t, c)
	raw := filepath.Join(t.TempDir(), "i.log")
	c.Track("web", 1, "web-1", raw)
	appendRaw(t, raw, "after\n")
	wantTexts(t, waitLines(t, c, "web", Query{}, 2), "before", "after")
}
