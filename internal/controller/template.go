package controller

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/spec"
	"github.com/skiff-sh/skiff/internal/store"
)

// template turns a release into what a runtime runs, unpacking its
// artifact first and, for a container app, resolving its image (building
// it once). It also returns how long the release may take to become
// ready.
func (c *Controller) template(ctx context.Context, rel store.Release) (instance.Template, time.Duration, error) {
	sp, err := spec.Parse(rel.SpecFile, rel.Spec)
	if err != nil {
		return instance.Template{}, 0, fmt.Errorf("release %d has an invalid spec: %w", rel.Number, err)
	}
	sp.Defaults()
	dir := filepath.Join(c.cfg.ReleasesDir, rel.App, strconv.Itoa(rel.Number))
	if rel.Artifact != "" {
		if err := c.cfg.Artifacts.Unpack(rel.Artifact, dir); err != nil {
			return instance.Template{}, 0, fmt.Errorf("unpack release %d: %w", rel.Number, err)
		}
	}
	t := instance.Template{
		App:     rel.App,
		Release: rel.Number,
		Command: sp.Command.Argv(),
		Dir:     dir,
		Port:    sp.Port,
		Env:     sp.Env,
	}
	if sp.IsContainer() {
		img, err := c.image(ctx, rel, sp, dir)
		if err != nil {
			return instance.Template{}, 0, fmt.Errorf("image of release %d: %w", rel.Number, err)
		}
		// The ID, not the tag: the same bits for the life of the release.
		t.Image = img
		t.ReadOnly = sp.ReadOnly
		t.CapDrop = sp.CapDrop
		for _, v := range sp.Volumes {
			t.Volumes = append(t.Volumes, instance.Volume{Name: v.Name, Path: v.Path, SizeBytes: v.SizeBytes()})
		}
		t.Ports = targets(sp)
		if rel.Status == store.StatusComplete {
			c.pruneImages(ctx, rel.App, rel.Number)
		}
	}
	if h := sp.Health; h != nil {
		t.Health = instance.Health{
			Path:              h.Path,
			TCP:               h.TCP,
			Interval:          time.Duration(h.Interval),
			Timeout:           time.Duration(h.Timeout),
			Threshold:         h.Threshold,
			LivenessThreshold: liveness(h.LivenessThreshold),
			ReadyTimeout:      time.Duration(h.ReadyTimeout),
		}
	}
	if r := sp.Resources; r != nil {
		t.Resources.CPU = r.CPU
		t.Resources.MemoryBytes = r.MemoryBytes()
	}
	timeout := t.Health.ReadyTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	return t, timeout, nil
}

// liveness maps the spec's threshold, where 0 turns restarts on failed
// probes off, to the runtime's, where a negative value does.
func liveness(n *int) int {
	if n == nil {
		return 0
	}
	if *n == 0 {
		return -1
	}
	return *n
}

// targets lists the container ports that tcp: forwards reach besides the
// app's own port, each once, so the runtime publishes them too.
func targets(sp *spec.Spec) []int {
	var out []int
	for _, p := range sp.TCP {
		if p.Target != 0 && p.Target != sp.Port && !slices.Contains(out, p.Target) {
			out = append(out, p.Target)
		}
	}
	return out
}
