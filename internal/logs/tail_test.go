package logs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestTailFile(t *testing.T) {
	big := strings.Repeat("b", 20<<10) // longer than one read block
	var many strings.Builder
	for i := range 5000 {
		many.WriteString(lineN(i) + strings.Repeat(".", 300) + "\n") // > 1 MiB in all
	}
	huge := strings.Repeat("h", 2<<20) // one line longer than the window
	for _, tc := range []struct {
		name    string
		content *string // nil: no file
		n       int
		want    []string
	}{
		{name: "missing file", n: 3},
		{name: "empty file", content: ptr(""), n: 3},
		{name: "zero lines asked", content: ptr("a\nb\n"), n: 0},
		{name: "last lines", content: ptr("a\nb\nc\nd\n"), n: 2, want: []string{"c", "d"}},
		{name: "fewer lines than asked", content: ptr("a\nb\n"), n: 5, want: []string{"a", "b"}},
		{name: "unterminated last line", content: ptr("a\nb\nwhere it cra"), n: 2, want: []string{"b", "where it cra"}},
		{name: "crlf", content: ptr("a\r\nb\r\n"), n: 2, want: []string{"a", "b"}},
		{name: "blank lines count", content: ptr("a\n\nb\n"), n: 2, want: []string{"", "b"}},
		{name: "lines across blocks", content: ptr("first\n" + big + "\nlast\n"), n: 2, want: []string{big, "last"}},
		{name: "file larger than the window", content: ptr(many.String()), n: 2, want: []string{
			lineN(4998) + strings.Repeat(".", 300), lineN(4999) + strings.Repeat(".", 300)}},
		{name: "one line larger than the window", content: ptr(huge + "\n"), n: 1, want: []string{huge[:tailWindow-1]}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "raw.log")
			if tc.content != nil {
				if err := os.WriteFile(path, []byte(*tc.content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got := TailFile(path, tc.n)
			if !slices.Equal(got, tc.want) {
				t.Errorf("TailFile = %d %q, want %d %q", len(got), shorten(got), len(tc.want), shorten(tc.want))
			}
		})
	}
}

func ptr(s string) *string { return &s }
