package logs

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// newTestCollector makes a collector over a fresh Dir (unless opts has
// one) polling every 10ms.
func newTestCollector(t *testing.T, opts Options) *Collector {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 10 * time.Millisecond
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	c, err := NewCollector(opts)
	if err != nil {
		t.Fatalf("NewCollector: %v", err)
	}
	return c
}

// start runs c until the returned stop is called (or the test ends); stop
// returns once Run has returned.
func start(t *testing.T, c *Collector) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		c.Run(ctx)
		close(done)
	}()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// appendRaw writes s to the end of a raw file as an instance would.
func appendRaw(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, c *Collector, app string, q Query) []Line {
	t.Helper()
	var got []Line
	if err := c.Read(context.Background(), app, q, func(l Line) error {
		got = append(got, l)
		return nil
	}); err != nil {
		t.Fatalf("Read %s: %v", app, err)
	}
	return got
}

// waitFor polls cond until it holds, failing the test after 5s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitLines waits until app's log holds at least n lines matching q and
// returns them all.
func waitLines(t *testing.T, c *Collector, app string, q Query, n int) []Line {
	t.Helper()
	var got []Line
	deadline := time.Now().Add(5 * time.Second)
	for {
		got = readAll(t, c, app, q)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %d lines of %s; have %q", n, app, texts(got))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func texts(lines []Line) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.Text
	}
	return out
}

func wantTexts(t *testing.T, got []Line, want ...string) {
	t.Helper()
	if !slices.Equal(texts(got), want) {
		t.Fatalf("lines = %q, want %q", texts(got), want)
	}
}

func TestInterleaveInTimeOrder(t *testing.T) {
	c := newTestCollector(t, Options{})
	start(t, c)
	raw := t.TempDir()
	a, b := filepath.Join(raw, "a.log"), filepath.Join(raw, "b.log")
	c.Track("web", 1, "web-a", a)
	c.Track("web", 2, "web-b", b)

	steps := []struct{ path, text string }{
		{a, "a1"}, {b, "b1"}, {a, "a2"}, {b, "b2"}, {b, "b3"}, {a, "a3"},
	}
	for i, s := range steps {
		appendRaw(t, s.path, s.text+"\n")
		waitLines(t, c, "web", Query{}, i+1)
	}
	got := readAll(t, c, "web", Query{})
	wantTexts(t, got, "a1", "b1", "a2", "b2", "b3", "a3")
	for i := 1; i < len(got); i++ {
		if got[i].Time.Before(got[i-1].Time) {
			t.Errorf("line %d (%s) at %v is before line %d at %v", i, got[i].Text, got[i].Time, i-1, got[i-1].Time)
		}
	}
	want := Line{App: "web", Release: 2, Instance: "web-b", Text: "b1"}
	if g := got[1]; g.App != want.App || g.Release != want.Release || g.Instance != want.Instance || g.Text != want.Text {
		t.Errorf("line 1 = %+v, want %+v", g, want)
	}
}

func TestResumeAfterRestart(t *testing.T) {
	for _, retrack := range []bool{true, false} {
		name := "tracked again"
		if !retrack {
			name = "resumed from offsets alone"
		}
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			raw := filepath.Join(t.TempDir(), "i.log")
			c1 := newTestCollector(t, Options{Dir: dir})
			stop := start(t, c1)
			c1.Track("web", 1, "web-1", raw)
			appendRaw(t, raw, "one\n")
			waitLines(t, c1, "web", Query{}, 1)
			stop()

			// Written while no collector runs.
			appendRaw(t, raw, "two\nthree\n")

			c2 := newTestCollector(t, Options{Dir: dir})
			if retrack {
				c2.Track("web", 1, "web-1", raw)
			}
			if got := c2.Tracked(); !slices.Equal(got, []string{"web-1"}) {
				t.Fatalf("Tracked = %q, want [web-1]", got)
			}
			start(t, c2)
			waitLines(t, c2, "web", Query{}, 3)
			appendRaw(t, raw, "four\n")
			got := waitLines(t, c2, "web", Query{}, 4)
			wantTexts(t, got, "one", "two", "three", "four")
		})
	}
}

// A crash can leave offsets older than the app log. Lines are then read
// twice, never skipped.
func TestStaleOffsetsReReadNotLost(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(t.TempDir(), "i.log")
	offsets := filepath.Join(dir, "offsets.json")

	c1 := newTestCollector(t, Options{Dir: dir})
	stop := start(t, c1)
	c1.Track("web", 1, "web-1", raw)
	appendRaw(t, raw, "one\n")
	waitLines(t, c1, "web", Query{}, 1)
	stop()
	old, err := os.ReadFile(offsets)
	if err != nil {
		t.Fatal(err)
	}

	c2 := newTestCollector(t, Options{Dir: dir})
	stop = start(t, c2)
	appendRaw(t, raw, "two\n")
	waitLines(t, c2, "web", Query{}, 2)
	stop()
	// As if c2 crashed before persisting.
	if err := os.WriteFile(offsets, old, 0o600); err != nil {
		t.Fatal(err)
	}

	appendRaw(t, raw, "three\n")
	c3 := newTestCollector(t, Options{Dir: dir})
	start(t, c3)
	got := waitLines(t, c3, "web", Query{}, 4)
	wantTexts(t, got, "one", "two", "two", "three")
}

func TestUntrack(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(t.TempDir(), "i.log")
	c := newTestCollector(t, Options{Dir: dir})
	start(t, c)
	c.Track("web", 1, "web-1", raw)
	appendRaw(t, raw, "first\n")
	waitLines(t, c, "web", Query{}, 1)
	appendRaw(t, raw, "last words, no newline")

	c.Untrack("web-1")
	// Untrack reads the rest itself: no waiting for a poll.
	wantTexts(t, readAll(t, c, "web", Query{}), "first", "last words, no newline")
	if got := c.Tracked(); len(got) != 0 {
		t.Errorf("Tracked after Untrack = %q, want none", got)
	}
	if _, err := os.Stat(raw); err != nil {
		t.Errorf("raw file after Untrack: %v; it must be left for the caller", err)
	}
	// The offset is forgotten: a new collector does not resume the file.
	if got := newTestCollector(t, Options{Dir: dir}).Tracked(); len(got) != 0 {
		t.Errorf("new collector resumes %q, want none", got)
	}
	c.Untrack("never-tracked") // no-op, no panic
}

func TestTrackIdempotent(t *testing.T) {
	c := newTestCollector(t, Options{})
	start(t, c)
	dir := t.TempDir()
	first, second := filepath.Join(dir, "1.log"), filepath.Join(dir, "2.log")
	c.Track("web", 1, "web-1", first)
	appendRaw(t, first, "a\n")
	waitLines(t, c, "web", Query{}, 1)
	c.Track("web", 1, "web-1", first)
	appendRaw(t, first, "b\n")
	waitLines(t, c, "web", Query{}, 2)

	// A new path for the same instance: the old file's rest is collected
	// first, then the new file from its start.
	appendRaw(t, first, "c\n")
	appendRaw(t, second, "d\n")
	c.Track("web", 1, "web-1", second)
	got := waitLines(t, c, "web", Query{}, 4)
	wantTexts(t, got, "a", "b", "c", "d")
	if ids := c.Tracked(); !slices.Equal(ids, []string{"web-1"}) {
		t.Errorf("Tracked = %q, want [web-1]", ids)
	}
}

func TestTrackRejectsBadInput(t *testing.T) {
	c := newTestCollector(t, Options{})
	for _, tc := range []struct{ name, app, id, path string }{
		{"path traversal", "../etc", "i", "/tmp/x"},
		{"slash", "a/b", "i", "/tmp/x"},
		{"empty app", "", "i", "/tmp/x"},
		{"empty id", "web", "", "/tmp/x"},
		{"empty path", "web", "i", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c.Track(tc.app, 1, tc.id, tc.path)
			if got := c.Tracked(); len(got) != 0 {
				t.Errorf("Tracked = %q, want none", got)
			}
		})
	}
}

func TestNewCollectorErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		opts    func(dir string) Options
		offsets string
		want    error
		wantMsg string
	}{
		{name: "no dir", opts: func(string) Options { return Options{} }, want: ErrBadOptions},
		{name: "negative poll", opts: func(d string) Options { return Options{Dir: d, PollInterval: -1} }, want: ErrBadOptions},
		{name: "corrupt offsets", opts: func(d string) Options { return Options{Dir: d} }, offsets: "{not json", wantMsg: "remove the file"},
		{name: "future offsets version", opts: func(d string) Options { return Options{Dir: d} }, offsets: `{"version":9,"files":{}}`, wantMsg: "version 9"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if tc.offsets != "" {
				if err := os.WriteFile(filepath.Join(dir, "offsets.json"), []byte(tc.offsets), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			_, err := NewCollector(tc.opts(dir))
			if err == nil {
				t.Fatal("NewCollector succeeded, want an error")
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("err = %v, want %v", err, tc.want)
			}
			if tc.wantMsg != "" && !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("err = %v, want it to say %q", err, tc.wantMsg)
			}
		})
	}
}

// Offsets are persisted while the collector runs, not only when it stops,
// so a crash re-reads little.
func TestOffsetsPersistedWhileRunning(t *testing.T) {
	dir := t.TempDir()
	c := newTestCollector(t, Options{Dir: dir})
	start(t, c)
	raw := filepath.Join(t.TempDir(), "i.log")
	c.Track("web", 1, "web-1", raw)
	appendRaw(t, raw, "one\ntwo\n")
	waitFor(t, "the offset to be persisted", func() bool {
		entries, err := loadOffsets(filepath.Join(dir, "offsets.json"))
		return err == nil && entries["web-1"].Offset == int64(len("one\ntwo\n"))
	})
}
