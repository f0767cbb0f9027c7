// Package controller holds skiff's reconcile loops. The deploy controller
// compares each app's desired state (the store: target release, replica
// count, destroy requests) with what runs (a Runtime's instance sets) and
// takes one idempotent step at a time: grow the target release's set,
// retire an old instance (out of the edge's routes, drained, then
// stopped), finish or fail the release. It publishes the edge's route
// snapshots from the same observations. Nothing depends on having seen an
// event: every sync reads both sides afresh.
package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/internal/artifact"
	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/spec"
	"github.com/skiff-sh/skiff/internal/store"
)

// Edge is what the controller needs of the edge: take a route snapshot,
// drain a backend that left it, and report backends' request figures for
// rollout analysis.
type Edge interface {
	Apply(s *edge.Snapshot)
	Drain(ctx context.Context, backendID string) error
	Stats(backendIDs []string) edge.Stats
}

// LogStore forgets a destroyed app's logs.
type LogStore interface {
	DeleteApp(app string) error
}

// Config wires a Controller.
type Config struct {
	Store     *store.Store
	Runtime   Runtime
	Edge      Edge
	Artifacts *artifact.Store
	// ReleasesDir holds each release's unpacked artifact, <app>/<n>.
	ReleasesDir string
	Logs        LogStore
	Logger      *slog.Logger
	// DrainTimeout bounds how long a leaving instance's requests may take
	// to finish before it is stopped anyway. Default 30s.
	DrainTimeout time.Duration
	// Resync is how often every app is synced even without a change.
	// Default 10s.
	Resync time.Duration
	// Workers sync that many apps at once. Default 4.
	Workers int
	// Images resolves and builds container apps' images; nil refuses
	// container apps.
	Images Images
}

// Controller runs the deploy and route loops.
type Controller struct {
	cfg    Config
	log    *slog.Logger
	queue  *queue
	routes *routeTable

	mu     sync.Mutex
	tracks map[string]*track // "app/release"
	images imageState
}

// New builds a Controller; Run starts it.
func New(cfg Config) *Controller {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 30 * time.Second
	}
	if cfg.Resync == 0 {
		cfg.Resync = 10 * time.Second
	}
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	return &Controller{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "controller"),
		queue:  newQueue(),
		routes: newRouteTable(cfg.Edge),
		tracks: map[string]*track{},
	}
}

// Wake asks for app to be synced soon.
func (c *Controller) Wake(app string) { c.queue.Add(app) }

// Sets reports what runs for app; the API shows it.
func (c *Controller) Sets(ctx context.Context, app string) ([]instance.Set, error) {
	return c.cfg.Runtime.Sets(ctx, app)
}

// Run syncs every app now, then on every change and every Resync, until
// ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.cfg.Runtime.Watch(c.Wake)
	go c.resync(ctx)
	c.queue.run(ctx, c.cfg.Workers, c.sync)
}

// Prime publishes routes for every app from what runs now, before the edge
// starts serving, so a restarted server routes to adopted instances at
// once. It gives adopted instances up to wait to pass their first probe.
func (c *Controller) Prime(ctx context.Context, wait time.Duration) error {
	apps, err := c.cfg.Store.Apps(ctx)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(wait)
	for {
		starting := false
		for _, a := range apps {
			sets, err := c.cfg.Runtime.Sets(ctx, a.Name)
			if err != nil {
				return err
			}
			for _, set := range sets {
				for _, in := range set.Instances {
					starting = starting || in.State == instance.Starting
				}
			}
			r, err := c.plan(ctx, a, sets)
			if err != nil {
				return err
			}
			c.routes.setPorts(a.Name, a.TCP)
			c.routes.set(a.Name, r.routing(), sets)
		}
		if !starting || time.Now().After(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
	c.routes.publish()
	return nil
}

func (c *Controller) resync(ctx context.Context) {
	t := time.NewTicker(c.cfg.Resync)
	defer t.Stop()
	for {
		c.enqueueAll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *Controller) enqueueAll(ctx context.Context) {
	apps, err := c.cfg.Store.Apps(ctx)
	if err != nil {
		c.log.Error("list apps", "err", err)
		return
	}
	for _, a := range apps {
		c.queue.Add(a.Name)
	}
	// Sets of apps the store no longer knows are torn down.
	running, err := c.cfg.Runtime.Apps(ctx)
	if err != nil {
		c.log.Error("list running apps", "err", err)
		return
	}
	for _, name := range running {
		c.queue.Add(name)
	}
}

// sync takes one step towards app's desired state.
func (c *Controller) sync(ctx context.Context, app string) error {
	a, err := c.cfg.Store.App(ctx, app)
	if errors.Is(err, store.ErrNotFound) {
		return c.teardown(ctx, app, false)
	}
	if err != nil {
		return fmt.Errorf("load app %s: %w", app, err)
	}
	if a.Deleting {
		return c.teardown(ctx, app, true)
	}
	sets, err := c.cfg.Runtime.Sets(ctx, app)
	if err != nil {
		return fmt.Errorf("observe app %s: %w", app, err)
	}
	r, err := c.plan(ctx, a, sets)
	if err != nil {
		return err
	}
	// Routes first: the step below acts on what the edge serves now.
	c.routes.setPorts(app, a.TCP)
	c.routes.set(app, r.routing(), sets)
	c.routes.publish()

	if r.rel != nil {
		tmpl, health, err := c.template(ctx, *r.rel)
		if err != nil && ctx.Err() != nil {
			return err // shutting down, not a bad release
		}
		if err != nil {
			// A release whose spec or artifact cannot be used never will be.
			return c.cfg.Store.FinishRelease(ctx, app, r.rel.Number, "failed", err.Error())
		}
		r.tmpl, r.readyTimeout = tmpl, health
	}
	return r.step(ctx)
}

// plan loads app's target release and its spec, and returns the rollout
// they make with sets.
func (c *Controller) plan(ctx context.Context, a store.App, sets []instance.Set) (*rollout, error) {
	if a.Target == 0 {
		return newRollout(c, a, sets, nil, nil), nil
	}
	rel, err := c.cfg.Store.Release(ctx, a.Name, a.Target)
	if err != nil {
		return nil, fmt.Errorf("load release %d of %s: %w", a.Target, a.Name, err)
	}
	sp, err := spec.Parse(rel.SpecFile, rel.Spec)
	if err != nil {
		// template reports it and fails the release; route it plainly
		// meanwhile.
		return newRollout(c, a, sets, &rel, nil), nil
	}
	return newRollout(c, a, sets, &rel, sp), nil
}

// retire takes one instance out of service safely: no new requests, the
// running ones finish, then it is stopped.
func (c *Controller) retire(ctx context.Context, app string, in instance.Instance) error {
	log := c.log.With("app", app, "instance", in.ID)
	if err := c.cfg.Runtime.MarkDraining(ctx, app, in.ID); err != nil {
		return fmt.Errorf("drain instance %s: %w", in.ID, err)
	}
	sets, err := c.cfg.Runtime.Sets(ctx, app)
	if err != nil {
		return fmt.Errorf("observe app %s: %w", app, err)
	}
	c.routes.refresh(app, sets)
	c.routes.publish()
	dctx, cancel := context.WithTimeout(ctx, c.cfg.DrainTimeout)
	err = c.cfg.Edge.Drain(dctx, in.ID)
	cancel()
	if err != nil {
		log.Warn("instance still had requests at the drain deadline; stopping it anyway", "timeout", c.cfg.DrainTimeout)
	}
	if err := c.cfg.Runtime.Remove(ctx, app, in.ID); err != nil {
		return fmt.Errorf("stop instance %s: %w", in.ID, err)
	}
	return nil
}

// teardown stops everything of an app that is gone or being destroyed;
// with purge it then deletes the app's records, files and logs.
func (c *Controller) teardown(ctx context.Context, app string, purge bool) error {
	c.routes.remove(app)
	c.routes.publish()
	sets, err := c.cfg.Runtime.Sets(ctx, app)
	if err != nil {
		return fmt.Errorf("observe app %s: %w", app, err)
	}
	for _, set := range sets {
		for _, in := range set.Instances {
			dctx, cancel := context.WithTimeout(ctx, c.cfg.DrainTimeout)
			c.cfg.Edge.Drain(dctx, in.ID)
			cancel()
		}
		if err := c.cfg.Runtime.DeleteSet(ctx, app, set.Release); err != nil {
			return fmt.Errorf("stop release %d of %s: %w", set.Release, app, err)
		}
	}
	if !purge {
		return nil
	}
	if err := c.purgeImages(ctx, app); err != nil {
		c.log.Warn("remove images and volumes", "app", app, "err", err)
	}
	unused, err := c.cfg.Store.PurgeApp(ctx, app)
	if err != nil {
		return fmt.Errorf("purge app %s: %w", app, err)
	}
	for _, d := range unused {
		if err := c.cfg.Artifacts.Remove(d); err != nil {
			c.log.Warn("remove artifact", "app", app, "artifact", d, "err", err)
		}
	}
	if err := os.RemoveAll(filepath.Join(c.cfg.ReleasesDir, app)); err != nil {
		c.log.Warn("remove release files", "app", app, "err", err)
	}
	if c.cfg.Logs != nil {
		if err := c.cfg.Logs.DeleteApp(app); err != nil {
			c.log.Warn("remove logs", "app", app, "err", err)
		}
	}
	return nil
}
