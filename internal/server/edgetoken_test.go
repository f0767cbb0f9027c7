package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/internal/api"
)

func TestEdgeTokenFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := "0123456789abcdef0123456789abcdef"
	if h, err := edgeToken(write("good", good+"\n")); err != nil || h != api.HashToken(good) {
		t.Errorf("a good token file: hash %q, %v; want the token's hash without its newline", h, err)
	}
	if h, err := edgeToken(""); err != nil || h != "" {
		t.Errorf("no file: %q, %v; want none", h, err)
	}
	for _, tc := range []struct{ name, path, says string }{
		{"missing", filepath.Join(dir, "nope"), "--edge-token-file"},
		{"short", write("short", "abc\n"), "at least 16 characters (it is 3)"},
		{"two words", write("words", "0123456789 abcdef0123\n"), "one word"},
		{"empty", write("empty", "\n"), "(it is 0)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := edgeToken(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("edgeToken = %v; want an error saying %q", err, tc.says)
			}
			if b, _ := os.ReadFile(tc.path); strings.TrimSpace(string(b)) != "" && strings.Contains(err.Error(), strings.TrimSpace(string(b))) {
				t.Errorf("the error %q shows the token", err)
			}
		})
	}
}
