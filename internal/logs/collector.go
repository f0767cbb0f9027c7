package logs

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// Collector moves lines from instances' raw files into per-app logs and
// reads them back. It is safe for concurrent use; Run must run once for
// Track'ed files to be collected.
type Collector struct {
	opts        Options
	logger      *slog.Logger
	offsetsPath string
	// partialWait is partialLineWait; tests shorten it.
	partialWait time.Duration

	// mu serialises collection: polls, Track, Untrack and persisting.
	mu          sync.Mutex
	files       map[string]*rawFile // by instance id
	dirty       bool                // offsets changed since the last persist
	lastPersist time.Time

	// appsMu guards apps; it is taken after mu and before any appLog.mu.
	appsMu sync.Mutex
	apps   map[string]*appLog
}

// NewCollector opens (creating if needed) opts.Dir and resumes collecting
// every raw file whose offset was persisted there, so lines written while
// no collector ran are not lost even before the runtime tracks its
// instances again.
func NewCollector(opts Options) (*Collector, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	c := &Collector{
		opts:        opts,
		logger:      opts.Logger.With("component", "logs"),
		offsetsPath: filepath.Join(opts.Dir, "offsets.json"),
		partialWait: partialLineWait,
		files:       map[string]*rawFile{},
		apps:        map[string]*appLog{},
	}
	entries, err := loadOffsets(c.offsetsPath)
	if err != nil {
		return nil, err
	}
	for id, e := range entries {
		if err := checkApp(e.App); err != nil || id == "" || e.Path == "" || e.Offset < 0 {
			c.logger.Warn("ignoring bad entry in offsets file", "instance", id, "path", c.offsetsPath)
			continue
		}
		c.files[id] = &rawFile{id: id, app: e.App, release: e.Release, path: e.Path, off: e.Offset, ino: e.Inode}
	}
	return c, nil
}

// Run polls tracked raw files every PollInterval until ctx ends, then
// persists the offsets one last time.
func (c *Collector) Run(ctx context.Context) {
	tick := time.NewTicker(c.opts.PollInterval)
	defer tick.Stop()
	for {
		c.poll()
		select {
		case <-ctx.Done():
			c.mu.Lock()
			if c.dirty {
				if err := c.persist(); err != nil {
					c.logger.Error("persist log offsets", "err", err)
				}
			}
			c.mu.Unlock()
			return
		case <-tick.C:
		}
	}
}

// Track starts (or resumes, from the persisted offset) collecting the raw
// file of instance instanceID. It is idempotent per instance id; tracking
// an id under a new path first collects what remains of the old one.
// The file need not exist yet.
func (c *Collector) Track(app string, release int, instanceID, rawPath string) {
	logger := c.logger.With("app", app, "release", release, "instance", instanceID)
	if err := checkApp(app); err != nil {
		logger.Error("cannot collect logs", "err", err)
		return
	}
	if instanceID == "" || rawPath == "" {
		logger.Error("cannot collect logs: empty instance id or raw log path", "path", rawPath)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.files[instanceID]
	if !ok {
		c.files[instanceID] = &rawFile{id: instanceID, app: app, release: release, path: rawPath}
		c.dirty = true
		return
	}
	if r.path != rawPath {
		if err := c.collect(r, true); err != nil {
			logger.Warn("collect rest of previous raw log", "path", r.path, "err", err)
		}
		r.path, r.off, r.pending, r.ino = rawPath, 0, nil, 0
	}
	if r.app != app || r.release != release || r.leaving {
		r.app, r.release, r.leaving = app, release, false
	}
	c.dirty = true
}

// Untrack reads what remains of the instance's raw file (an unterminated
// last line included), stops tracking it and forgets its offset. It does
// not delete the raw file. If the remainder cannot be written now (a full
// disk), polls keep retrying and forget the file once they succeed.
func (c *Collector) Untrack(instanceID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.files[instanceID]
	if !ok {
		return
	}
	r.leaving = true
	if err := c.collect(r, true); err != nil {
		c.logger.Warn("collect rest of raw log; will retry", "instance", instanceID, "path", r.path, "err", err)
		return
	}
	delete(c.files, instanceID)
	c.dirty = true
	if err := c.persist(); err != nil {
		c.logger.Error("persist log offsets", "err", err)
	}
}

// Tracked lists the instance ids whose raw files are collected, including
// those resumed from persisted offsets. After recovering its instances, a
// runtime should Untrack the ids it no longer knows.
func (c *Collector) Tracked() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Sorted(maps.Keys(c.files))
}

// DeleteApp removes an app's collected logs and ends its followers. Lines
// of instances still tracked start a new log.
func (c *Collector) DeleteApp(app string) error {
	if err := checkApp(app); err != nil {
		return err
	}
	c.appsMu.Lock()
	defer c.appsMu.Unlock()
	a, ok := c.apps[app]
	if !ok {
		a = newAppLog(c.opts.Dir, app, c.opts.MaxAppBytes, c.logger)
	}
	delete(c.apps, app)
	// Still holding appsMu: no new appLog can recreate the directory
	// while it is being removed.
	return a.remove()
}

// app returns the app's log, creating the in-memory handle if needed.
func (c *Collector) app(name string) *appLog {
	c.appsMu.Lock()
	defer c.appsMu.Unlock()
	a, ok := c.apps[name]
	if !ok {
		a = newAppLog(c.opts.Dir, name, c.opts.MaxAppBytes, c.logger)
		c.apps[name] = a
	}
	return a
}

// poll collects every tracked file once and persists offsets when due.
func (c *Collector) poll() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range slices.Sorted(maps.Keys(c.files)) {
		r := c.files[id]
		err := c.collect(r, r.leaving)
		switch {
		case err != nil && !r.failing:
			c.logger.Warn("collect raw log", "app", r.app, "instance", id, "path", r.path, "err", err)
		case err == nil && r.failing:
			c.logger.Info("collecting raw log again", "app", r.app, "instance", id, "path", r.path)
		}
		r.failing = err != nil
		if err == nil && r.leaving {
			delete(c.files, id)
			c.dirty = true
		}
	}
	if c.dirty && time.Since(c.lastPersist) >= persistEvery {
		if err := c.persist(); err != nil {
			c.logger.Error("persist log offsets", "err", err)
		}
	}
}

// persist writes every tracked file's offset, after making the app logs
// durable: a persisted offset never counts lines a crash could lose.
// Callers hold c.mu.
func (c *Collector) persist() error {
	// Set before trying, so a failing disk is retried once per
	// persistEvery, not at every poll.
	c.lastPersist = time.Now()
	c.appsMu.Lock()
	apps := slices.Collect(maps.Values(c.apps))
	c.appsMu.Unlock()
	for _, a := range apps {
		if err := a.sync(); err != nil {
			return err
		}
	}
	entries := make(map[string]offsetEntry, len(c.files))
	for id, r := range c.files {
		entries[id] = r.entry()
	}
	if err := saveOffsets(c.offsetsPath, entries); err != nil {
		return err
	}
	c.dirty = false
	return nil
}
