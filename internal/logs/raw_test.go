package logs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSplitLines(t *testing.T) {
	long := strings.Repeat("x", 40000)
	// "é" is two bytes; placed so a plain byte cut at 16 KiB would split it.
	accented := strings.Repeat("a", maxLineBytes-1) + "é" + "tail"
	for _, tc := range []struct {
		name      string
		pending   string
		chunk     string
		want      []string
		wantAfter string
	}{
		{name: "whole lines", chunk: "a\nb\n", want: []string{"a", "b"}},
		{name: "partial kept", chunk: "a\nb", want: []string{"a"}, wantAfter: "b"},
		{name: "pending completed", pending: "hel", chunk: "lo\n", want: []string{"hello"}},
		{name: "crlf", chunk: "a\r\nb\r\n", want: []string{"a", "b"}},
		{name: "blank line kept", chunk: "\n\n", want: []string{"", ""}},
		{name: "long line split", chunk: long + "\n", want: []string{long[:16384], long[16384:32768], long[32768:]}},
		{name: "long unterminated line split", chunk: long, want: []string{long[:16384], long[16384:32768]}, wantAfter: long[32768:]},
		{name: "split keeps runes whole", chunk: accented + "\n", want: []string{accented[:maxLineBytes-1], accented[maxLineBytes-1:]}},
		{name: "NUL hole skipped", chunk: "\x00\x00\x00after\n", want: []string{"after"}},
		{name: "all-NUL line dropped", chunk: "\x00\x00\x00\nok\n", want: []string{"ok"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, rest := splitLines([]byte(tc.pending), []byte(tc.chunk))
			if !slices.Equal(got, tc.want) {
				t.Errorf("lines = %d %q, want %d %q", len(got), shorten(got), len(tc.want), shorten(tc.want))
			}
			if string(rest) != tc.wantAfter {
				t.Errorf("rest = %q, want %q", rest, tc.wantAfter)
			}
		})
	}
}

func shorten(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		if len(s) > 20 {
			s = s[:10] + "…" + s[len(s)-10:]
		}
		out[i] = s
	}
	return out
}

// rawOffset is how far c has read the instance's raw file.
func rawOffset(c *Collector, id string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.files[id]; ok {
		return r.off
	}
	return -1
}

func TestPartialLines(t *testing.T) {
	c := newTestCollector(t, Options{})
	start(t, c)
	raw := filepath.Join(t.TempDir(), "i.log")
	c.Track("web", 1, "web-1", raw)

	// A line written in two parts, the collector reading in between, is
	// still one line.
	appendRaw(t, raw, "hello wor")
	waitFor(t, "the collector to read the first part", func() bool { return rawOffset(c, "web-1") == 9 })
	appendRaw(t, raw, "ld\n")
	wantTexts(t, waitLines(t, c, "web", Query{}, 1), "hello world")

	// A line that stays unterminated is recorded after partialLineWait.
	written := time.Now()
	appendRaw(t, raw, "password: ")
	got := waitLines(t, c, "web", Query{}, 2)
	wantTexts(t, got, "hello world", "password: ")
	if waited := got[1].Time.Sub(written); waited < partialLineWait {
		t.Errorf("unterminated line recorded after %v, want at least %v", waited, partialLineWait)
	}
	// What follows it is a line of its own.
	appendRaw(t, raw, "hunter2\n")
	wantTexts(t, waitLines(t, c, "web", Query{}, 3), "hello world", "password: ", "hunter2")
}

func TestCopyTruncate(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(t.TempDir(), "i.log")
	c := newTestCollector(t, Options{Dir: dir, MaxRawBytes: 100})
	stop := start(t, c)
	c.Track("web", 1, "web-1", raw)

	var want []string
	written := 0
	for batch := range 8 {
		var b strings.Builder
		for i := range 5 {
			line := strings.Repeat("=", 20) + " " + string(rune('a'+batch)) + string(rune('0'+i))
			want = append(want, line)
			b.WriteString(line + "\n")
		}
		appendRaw(t, raw, b.String())
		written += b.Len()
		waitLines(t, c, "web", Query{}, len(want))
	}
	waitFor(t, "the raw file to be truncated", func() bool {
		fi, err := os.Stat(raw)
		return err == nil && fi.Size() < int64(written) && fi.Size() <= 100
	})
	wantTexts(t, readAll(t, c, "web", Query{}), want...)

	// After a restart, the persisted offset fits the truncated file.
	stop()
	appendRaw(t, raw, "after restart\n")
	want = append(want, "after restart")
	c2 := newTestCollector(t, Options{Dir: dir, MaxRawBytes: 100})
	start(t, c2)
	wantTexts(t, waitLines(t, c2, "web", Query{}, len(want)), want...)
}

// A writer that did not open its file with O_APPEND writes past the end
// after a truncation, leaving a hole of NUL bytes: no line comes of it.
func TestCopyTruncateWithoutAppend(t *testing.T) {
	c := newTestCollector(t, Options{MaxRawBytes: 100})
	start(t, c)
	raw := filepath.Join(t.TempDir(), "i.log")
	c.Track("web", 1, "web-1", raw)

	w, err := os.OpenFile(raw, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	first := strings.Repeat("y", 150)
	if _, err := w.WriteString(first + "\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the raw file to be truncated", func() bool {
		fi, err := os.Stat(raw)
		return err == nil && fi.Size() == 0
	})
	if _, err := w.WriteString("after\n"); err != nil {
		t.Fatal(err)
	}
	wantTexts(t, waitLines(t, c, "web", Query{}, 2), first, "after")
}

func TestRawFileTruncatedOrReplacedBySomeoneElse(t *testing.T) {
	c := newTestCollector(t, Options{})
	start(t, c)
	raw := filepath.Join(t.TempDir(), "i.log")
	c.Track("web", 1, "web-1", raw)

	appendRaw(t, raw, "one\ntwo\n")
	waitLines(t, c, "web", Query{}, 2)

	// Shrunk: read again from its start.
	if err := os.Truncate(raw, 0); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the collector to see the shrunk file", func() bool { return rawOffset(c, "web-1") == 0 })
	appendRaw(t, raw, "three\n")
	waitLines(t, c, "web", Query{}, 3)

	// Replaced by a new file larger than what was read: noticed by its
	// identity, not its size. Written beside it first so the old file's
	// inode cannot be reused for it.
	next := raw + ".new"
	appendRaw(t, next, "four\nfive\nsix\nseven\n")
	if err := os.Rename(next, raw); err != nil {
		t.Fatal(err)
	}
	got := waitLines(t, c, "web", Query{}, 7)
	wantTexts(t, got, "one", "two", "three", "four", "five", "six", "seven")
}
