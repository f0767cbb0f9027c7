package cli

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/api"
)

// skiff releases shows what each release runs, digests cut to 12 hex
// digits as docker does: an image pinned by digest on Kubernetes, a
// Docker image ID, or - for a process app.
func TestReleasesShowTheImage(t *testing.T) {
	digest := "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	rels := []api.Release{
		{Number: 3, Status: "complete", Image: "ghcr.io/club/shop@" + digest, Created: time.Now(), Message: "done"},
		{Number: 2, Status: "complete", Image: digest, Created: time.Now(), Message: "done"},
		{Number: 1, Status: "complete", Created: time.Now(), Message: "done"},
	}
	var buf bytes.Buffer
	if err := printReleases(&buf, rels); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "IMAGE") {
		t.Fatalf("output:\n%s\nwant a header with IMAGE and three rows", buf.String())
	}
	for i, want := range []string{"ghcr.io/club/shop@sha256:0123456789ab ", "sha256:0123456789ab ", " - "} {
		if !strings.Contains(lines[i+1], want) || strings.Contains(lines[i+1], "0123456789abc") {
			t.Errorf("row %q: want it to show %q and no more of the digest", lines[i+1], want)
		}
	}
}
