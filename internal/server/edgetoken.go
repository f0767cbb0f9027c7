package server

import (
	"fmt"
	"os"
	"strings"

	"github.com/skiff-sh/skiff/internal/api"
)

// minEdgeToken is the shortest edge token accepted: it guards the route
// feed, so it must not be guessable.
const minEdgeToken = 16

// edgeToken reads the edge token from path and returns its hash, or ""
// when path is "". Surrounding white space (a file's last newline) is
// not part of it. The token itself is never logged or returned.
func edgeToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--edge-token-file: %w", err)
	}
	token := strings.TrimSpace(string(b))
	if len(token) < minEdgeToken || strings.ContainsAny(token, " \t\r\n") {
		return "", fmt.Errorf("--edge-token-file %s: the edge token must be one word of at least %d characters (it is %d); write a random one, e.g. openssl rand -hex 32 > %s", path, minEdgeToken, len(token), path)
	}
	return api.HashToken(token), nil
}
