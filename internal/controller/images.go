package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/skiff-sh/skiff/internal/spec"
	"github.com/skiff-sh/skiff/internal/store"
)

// Images turns a container app's `image:` or `build:` into the ID of an
// image the runtime runs, and removes images no release needs. The
// controller stays runtime-agnostic: the server wires a Docker builder in.
type Images interface {
	// Resolve builds or looks up the image of release n of app, whose
	// uploaded directory is dir, sending build output lines to progress.
	Resolve(ctx context.Context, app string, n int, sp *spec.Spec, dir string, progress func(line string)) (string, error)
	// Prune removes the images built for app except those in keep.
	Prune(ctx context.Context, app string, keep []string) error
	// Purge removes every image and volume made for a destroyed app.
	Purge(ctx context.Context, app string) error
}

// keepImages is how many of an app's newest releases keep their images,
// so a rollback to any of them needs no rebuild.
const keepImages = 5

// ErrNoImages means a container app was deployed to a server that cannot
// run containers.
var ErrNoImages = errors.New("this server cannot run container apps")

// imageState remembers, per app, the stable release whose images were
// last pruned, so pruning runs once per completed deploy.
type imageState struct {
	mu     sync.Mutex
	pruned map[string]int
}

// image returns the image ID release rel runs, resolving it once: a
// release that has one recorded keeps it, a rollback takes the one of the
// release it copies, anything else is built or looked up now and
// recorded. Build output goes to the event log as release.build events.
func (c *Controller) image(ctx context.Context, rel store.Release, sp *spec.Spec, dir string) (string, error) {
	if rel.Image != "" {
		return rel.Image, nil
	}
	if c.cfg.Images == nil {
		return "", fmt.Errorf("%w: image and build need Docker Engine, which this server was started without", ErrNoImages)
	}
	id := ""
	if rel.RollbackOf != 0 {
		if old, err := c.cfg.Store.Release(ctx, rel.App, rel.RollbackOf); err == nil && old.Image != "" {
			id = old.Image
		}
	}
	if id == "" {
		progress := func(line string) {
			if _, err := c.cfg.Store.AddEvent(context.WithoutCancel(ctx), store.Event{App: rel.App, Release: rel.Number, Kind: "release.build", Message: line}); err != nil {
				c.log.Warn("record build output", "app", rel.App, "release", rel.Number, "err", err)
			}
		}
		var err error
		if id, err = c.cfg.Images.Resolve(ctx, rel.App, rel.Number, sp, dir, progress); err != nil {
			return "", err
		}
	}
	got, err := c.cfg.Store.SetReleaseImage(ctx, rel.App, rel.Number, id)
	if err != nil {
		return "", fmt.Errorf("record image of release %d: %w", rel.Number, err)
	}
	return got, nil
}

// pruneImages removes images of app beyond its newest releases once per
// newly stable release.
func (c *Controller) pruneImages(ctx context.Context, app string, stable int) {
	if c.cfg.Images == nil || stable == 0 {
		return
	}
	c.images.mu.Lock()
	done := c.images.pruned[app] == stable
	c.images.mu.Unlock()
	if done {
		return
	}
	rels, err := c.cfg.Store.Releases(ctx, app)
	if err != nil {
		c.log.Warn("list releases to prune images", "app", app, "err", err)
		return
	}
	a, err := c.cfg.Store.App(ctx, app)
	if err != nil {
		return
	}
	var keep []string
	for i, r := range rels {
		if r.Image != "" && (i < keepImages || r.Number == a.Target || r.Number == a.Stable) {
			keep = append(keep, r.Image)
		}
	}
	if err := c.cfg.Images.Prune(ctx, app, keep); err != nil {
		c.log.Warn("prune old images", "app", app, "err", err)
		return
	}
	c.images.mu.Lock()
	if c.images.pruned == nil {
		c.images.pruned = map[string]int{}
	}
	c.images.pruned[app] = stable
	c.images.mu.Unlock()
}

// purgeImages removes a destroyed app's images and volumes.
func (c *Controller) purgeImages(ctx context.Context, app string) error {
	c.images.mu.Lock()
	delete(c.images.pruned, app)
	c.images.mu.Unlock()
	if c.cfg.Images == nil {
		return nil
	}
	return c.cfg.Images.Purge(ctx, app)
}
