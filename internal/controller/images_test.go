package controller

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/skiff-sh/skiff/internal/spec"
)

// fakeImages resolves release n to "img-n" and records what is pruned.
type fakeImages struct {
	mu     sync.Mutex
	pruned [][]string
	purged []string
}

func (f *fakeImages) Resolve(ctx context.Context, app string, n int, sp *spec.Spec, dir string, progress func(string)) (string, error) {
	return fmt.Sprintf("img-%d", n), nil
}

func (f *fakeImages) Prune(ctx context.Context, app string, keep []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pruned = append(f.pruned, slices.Sorted(slices.Values(keep)))
	return nil
}

func (f *fakeImages) Purge(ctx context.Context, app string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.purged = append(f.purged, app)
	return nil
}

func (f *fakeImages) lastKeep() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.pruned) == 0 {
		return nil
	}
	return f.pruned[len(f.pruned)-1]
}

// TestImagesKept: once a deploy completes, the images of the app's five
// newest releases and of its stable one are kept, every other one is
// pruned, once per stable release; a rollback reuses the old image; a
// destroyed app's images are purged.
func TestImagesKept(t *testing.T) {
	h := newHarness(t)
	imgs := &fakeImages{}
	h.c = New(Config{
		Store: h.store, Runtime: h.rt, Edge: h.edge, Artifacts: h.arts, ReleasesDir: h.releasesDir,
		Logs: h.logs, Logger: h.c.log, DrainTimeout: h.c.cfg.DrainTimeout, Images: imgs,
	})
	const container = "image: example/hello:1\nport: 8080\n"
	h.deployReady("hello", h.release("hello", 1, container))
	h.sync("hello")
	if got := imgs.lastKeep(); !slices.Equal(got, []string{"img-1"}) {
		t.Fatalf("after release 1 kept %v, want [img-1]", got)
	}
	// Releases 2-8 are made but never deployed (each replaces the last as
	// the target): release 1 stays stable.
	for range 7 {
		h.release("hello", 1, container)
	}
	for n := 2; n <= 8; n++ {
		if _, err := h.c.image(h.ctx, h.rel("hello", n), mustSpec(t, container), t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	if s := h.app("hello").Stable; s != 1 {
		t.Fatalf("stable = %d, want 1", s)
	}
	h.c.pruneImages(h.ctx, "hello", 8)
	want := []string{"img-1", "img-4", "img-5", "img-6", "img-7", "img-8"}
	if got := imgs.lastKeep(); !slices.Equal(got, want) {
		t.Errorf("kept %v, want the five newest and the stable one's %v", got, want)
	}
	n := len(imgs.pruned)
	h.c.pruneImages(h.ctx, "hello", 8)
	if len(imgs.pruned) != n {
		t.Errorf("pruned again for the same stable release")
	}

	if err := h.store.MarkDeleting(h.ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	h.sync("hello")
	if !slices.Equal(imgs.purged, []string{"hello"}) {
		t.Errorf("purged %v after destroy, want [hello]", imgs.purged)
	}
}

func mustSpec(t *testing.T, extra string) *spec.Spec {
	t.Helper()
	sp, err := spec.Parse("skiff.yaml", []byte("name: hello\ncommand: ./run.sh\n"+extra))
	if err != nil {
		t.Fatal(err)
	}
	return sp
}
