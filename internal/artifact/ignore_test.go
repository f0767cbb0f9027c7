package artifact

import (
	"strings"
	"testing"
)

func TestIgnoreMatch(t *testing.T) {
	cases := []struct {
		name     string
		patterns string
		path     string
		dir      bool
		want     bool
	}{
		{"basename at the top", "*.log", "debug.log", false, true},
		{"basename at depth", "*.log", "a/b/debug.log", false, true},
		{"basename does not match a prefix", "*.log", "debug.log.gz", false, false},
		{"dir pattern matches a dir", "node_modules/", "web/node_modules", true, true},
		{"dir pattern skips files", "node_modules/", "node_modules", false, false},
		{"leading slash anchors", "/build", "build", true, true},
		{"anchored pattern misses depth", "/build", "src/build", true, false},
		{"inner slash anchors", "docs/*.md", "docs/a.md", false, true},
		{"inner slash misses depth", "docs/*.md", "x/docs/a.md", false, false},
		{"star stays in its segment", "docs/*", "docs/a/b.md", false, false},
		{"double star spans segments", "docs/**/*.md", "docs/a/b/c.md", false, true},
		{"leading double star", "**/tmp", "a/b/tmp", true, true},
		{"comment ignored", "# *.go\n", "main.go", false, false},
		{"blank lines and spaces", "\n  \n*.tmp   \n", "x.tmp", false, true},
		{"character class", "file[0-9].txt", "file7.txt", false, true},
		{"escaped hash", `\#notes`, "#notes", false, true},
		{"second pattern applies", "*.log\n*.tmp", "a.tmp", false, true},
		{"no pattern, no match", "*.log", "main.go", false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rules, err := parseIgnore(strings.NewReader(tc.patterns))
			if err != nil {
				t.Fatal(err)
			}
			if got := rules.match(tc.path, tc.dir); got != tc.want {
				t.Errorf("patterns %q on %q (dir %v) = %v, want %v", tc.patterns, tc.path, tc.dir, got, tc.want)
			}
		})
	}
}

func TestIgnoreErrors(t *testing.T) {
	cases := []struct {
		name, patterns, want string
	}{
		{"negation", "*.log\n!keep.log", "line 2"},
		{"bad pattern", "[", "line 1: bad pattern"},
		{"root itself", "# x\n/", "line 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseIgnore(strings.NewReader(tc.patterns))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), ".skiffignore") {
				t.Errorf("err = %v, want one naming .skiffignore and %q", err, tc.want)
			}
		})
	}
}
