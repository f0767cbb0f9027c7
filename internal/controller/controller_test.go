package controller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/artifact"
	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/store"
)

// journal records, in order, what the controller asked of the runtime
// and the edge, so tests can check the order of a retirement.
type journal struct {
	mu      sync.Mutex
	entries []entry
}

// entry is one call: kind is "mark-draining", "remove", "drain",
// "apply", "scale" or "delete-set".
type entry struct {
	kind string
	id   string         // instance, or "app/release" for sets
	n    int            // scale size
	snap *edge.Snapshot // apply
}

func (j *journal) add(e entry) {
	j.mu.Lock()
	j.entries = append(j.entries, e)
	j.mu.Unlock()
}

func (j *journal) all() []entry {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.entries)
}

// fakeRuntime keeps instance sets in memory. Scale creates instances in
// state Starting; tests move them on with setState and readyAll.
type fakeRuntime struct {
	t   *testing.T
	log *journal

	mu         sync.Mutex
	sets       map[string]map[int][]instance.Instance // app, release
	templates  map[string]instance.Template           // "app/release"
	seq        int
	failRemove error
	failScale  error
	watchers   []func(string)
	setsCalls  int
	onSets     func(calls int) // called, without the lock, on each Sets
}

func newFakeRuntime(t *testing.T, log *journal) *fakeRuntime {
	return &fakeRuntime{t: t, log: log, sets: map[string]map[int][]instance.Instance{}, templates: map[string]instance.Template{}}
}

var _ Runtime = (*fakeRuntime)(nil)

func setKey(app string, release int) string { return fmt.Sprintf("%s/%d", app, release) }

func (r *fakeRuntime) Sets(ctx context.Context, app string) ([]instance.Set, error) {
	r.mu.Lock()
	r.setsCalls++
	calls, hook := r.setsCalls, r.onSets
	r.mu.Unlock()
	if hook != nil {
		hook(calls)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []instance.Set
	for rel, ins := range r.sets[app] {
		ins = slices.Clone(ins)
		slices.SortFunc(ins, func(a, b instance.Instance) int { return strings.Compare(a.ID, b.ID) })
		out = append(out, instance.Set{App: app, Release: rel, Size: len(ins), Instances: ins})
	}
	slices.SortFunc(out, func(a, b instance.Set) int { return a.Release - b.Release })
	return out, nil
}

func (r *fakeRuntime) Apps(ctx context.Context) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var apps []string
	for app, sets := range r.sets {
		if len(sets) > 0 {
			apps = append(apps, app)
		}
	}
	slices.Sort(apps)
	return apps, nil
}

func (r *fakeRuntime) Scale(ctx context.Context, t instance.Template, n int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failScale != nil {
		return r.failScale
	}
	r.log.add(entry{kind: "scale", id: setKey(t.App, t.Release), n: n})
	if r.sets[t.App] == nil {
		r.sets[t.App] = map[int][]instance.Instance{}
	}
	r.templates[setKey(t.App, t.Release)] = t
	ins := r.sets[t.App][t.Release]
	for len(ins) < n {
		r.seq++
		ins = append(ins, instance.Instance{
			ID: fmt.Sprintf("%s-%d-%03d", t.App, t.Release, r.seq), App: t.App, Release: t.Release,
			Endpoint:  fmt.Sprintf("127.0.0.1:%d", 20000+r.seq),
			State:     instance.Starting,
			StartedAt: time.Date(2026, 1, 1, 0, 0, r.seq, 0, time.UTC),
		})
	}
	if len(ins) > n {
		// The contract: the controller never shrinks a set by Scale
		// while its leaving instances may carry traffic.
		for _, in := range leaving(ins)[:len(ins)-n] {
			if in.State == instance.Ready {
				r.t.Errorf("Scale(%s, %d) would stop ready instance %s without draining it", setKey(t.App, t.Release), n, in.ID)
			}
		}
		ins = slices.Clone(leaving(ins)[len(ins)-n:])
	}
	r.sets[t.App][t.Release] = ins
	return nil
}

// find returns where instance id is, or ok false.
func (r *fakeRuntime) find(app, id string) (rel, i int, ok bool) {
	for rel, ins := range r.sets[app] {
		for i, in := range ins {
			if in.ID == id {
				return rel, i, true
			}
		}
	}
	return 0, 0, false
}

func (r *fakeRuntime) MarkDraining(ctx context.Context, app, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log.add(entry{kind: "mark-draining", id: id})
	rel, i, ok := r.find(app, id)
	if !ok {
		return fmt.Errorf("no instance %s", id)
	}
	r.sets[app][rel][i].State = instance.Draining
	return nil
}

func (r *fakeRuntime) Remove(ctx context.Context, app, id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failRemove != nil {
		return r.failRemove
	}
	r.log.add(entry{kind: "remove", id: id})
	rel, i, ok := r.find(app, id)
	if !ok {
		return fmt.Errorf("no instance %s", id)
	}
	r.sets[app][rel] = slices.Delete(r.sets[app][rel], i, i+1)
	return nil
}

func (r *fakeRuntime) DeleteSet(ctx context.Context, app string, release int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log.add(entry{kind: "delete-set", id: setKey(app, release)})
	delete(r.sets[app], release)
	if len(r.sets[app]) == 0 {
		delete(r.sets, app)
	}
	return nil
}

func (r *fakeRuntime) Watch(fn func(app string)) {
	r.mu.Lock()
	r.watchers = append(r.watchers, fn)
	r.mu.Unlock()
}

// update changes instance id of app with fn.
func (r *fakeRuntime) update(app, id string, fn func(*instance.Instance)) {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	rel, i, ok := r.find(app, id)
	if !ok {
		r.t.Fatalf("no instance %s of %s", id, app)
	}
	fn(&r.sets[app][rel][i])
}

func (r *fakeRuntime) setState(app, id string, s instance.State) {
	r.t.Helper()
	r.update(app, id, func(in *instance.Instance) { in.State = s })
}

// readyAll makes every starting instance of app ready, as passing probes
// would.
func (r *fakeRuntime) readyAll(app string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ins := range r.sets[app] {
		for i := range ins {
			if ins[i].State == instance.Starting {
				ins[i].State = instance.Ready
			}
		}
	}
}

// instances lists app's instances of release (0: of every release).
func (r *fakeRuntime) instances(app string, release int) []instance.Instance {
	sets, _ := r.Sets(context.Background(), app)
	var out []instance.Instance
	for _, s := range sets {
		if release == 0 || s.Release == release {
			out = append(out, s.Instances...)
		}
	}
	return out
}

func ids(ins []instance.Instance) []string {
	out := make([]string, len(ins))
	for i, in := range ins {
		out[i] = in.ID
	}
	return out
}

// fakeEdge records snapshots and drains.
type fakeEdge struct {
	log *journal

	mu    sync.Mutex
	snaps []*edge.Snapshot
	stats map[string]edge.Stats
}

var _ Edge = (*fakeEdge)(nil)

func (e *fakeEdge) Apply(s *edge.Snapshot) {
	// Copy it: the edge must not depend on the caller's slices.
	c := &edge.Snapshot{Generation: s.Generation}
	for _, r := range s.Routes {
		r.Backends = slices.Clone(r.Backends)
		c.Routes = append(c.Routes, r)
	}
	for _, r := range s.TCP {
		r.Backends = slices.Clone(r.Backends)
		c.TCP = append(c.TCP, r)
	}
	e.mu.Lock()
	e.snaps = append(e.snaps, c)
	e.mu.Unlock()
	e.log.add(entry{kind: "apply", snap: c})
}

func (e *fakeEdge) Drain(ctx context.Context, id string) error {
	e.log.add(entry{kind: "drain", id: id})
	return nil
}

// Stats sums the figures setStats gave each backend.
func (e *fakeEdge) Stats(ids []string) edge.Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	var sum edge.Stats
	for _, id := range ids {
		sum = sum.Add(e.stats[id])
	}
	return sum
}

// addStats adds requests answered in d, errors of them 5xx, to backend
// id's figures.
func (e *fakeEdge) addStats(id string, requests, errors int64, d time.Duration) {
	var s edge.Stats
	s.Requests, s.Errors = requests, errors
	s.Latency[edge.LatencyBucket(d)] = requests
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.stats == nil {
		e.stats = map[string]edge.Stats{}
	}
	e.stats[id] = e.stats[id].Add(s)
}

func (e *fakeEdge) applied() []*edge.Snapshot {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.snaps)
}

func (e *fakeEdge) last() *edge.Snapshot {
	s := e.applied()
	if len(s) == 0 {
		return nil
	}
	return s[len(s)-1]
}

// backends lists the backend ids a snapshot routes host to, nil when it
// has no such route.
func backends(s *edge.Snapshot, host string) []string {
	for _, r := range s.Routes {
		if r.Host == host {
			var out []string
			for _, b := range r.Backends {
				out = append(out, b.ID)
			}
			return out
		}
	}
	return nil
}

func hasHost(s *edge.Snapshot, host string) bool {
	for _, r := range s.Routes {
		if r.Host == host {
			return true
		}
	}
	return false
}

type fakeLogStore struct {
	mu      sync.Mutex
	deleted []string
}

func (l *fakeLogStore) DeleteApp(app string) error {
	l.mu.Lock()
	l.deleted = append(l.deleted, app)
	l.mu.Unlock()
	return nil
}

// harness is a Controller over a real store and artifact store, a fake
// runtime and a fake edge, driven one sync at a time.
type harness struct {
	t           *testing.T
	ctx         context.Context
	store       *store.Store
	arts        *artifact.Store
	releasesDir string
	log         *journal
	rt          *fakeRuntime
	edge        *fakeEdge
	logs        *fakeLogStore
	c           *Controller
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	arts, err := artifact.NewStore(filepath.Join(dir, "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	log := &journal{}
	h := &harness{
		t: t, ctx: context.Background(), store: st, arts: arts,
		releasesDir: filepath.Join(dir, "releases"),
		log:         log, rt: newFakeRuntime(t, log), edge: &fakeEdge{log: log}, logs: &fakeLogStore{},
	}
	h.c = New(Config{
		Store: st, Runtime: h.rt, Edge: h.edge, Artifacts: arts, ReleasesDir: h.releasesDir,
		Logs: h.logs, Logger: slog.New(slog.DiscardHandler), DrainTimeout: time.Second,
	})
	return h
}

// artifact stores an archive of one file with content and returns its
// digest.
func (h *harness) artifact(content string) string {
	h.t.Helper()
	dir := h.t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte(content), 0o755); err != nil {
		h.t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := artifact.Pack(&buf, dir, 0); err != nil {
		h.t.Fatal(err)
	}
	d, err := h.arts.Put(&buf, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

// release creates the next release of app with replicas instances and
// extra spec lines, as a deploy through the API would, and returns its
// number.
func (h *harness) release(app string, replicas int, extra string) int {
	h.t.Helper()
	return h.releaseWith(app, replicas, extra, h.artifact("#!/bin/sh\n# "+app+extra+"\n"))
}

func (h *harness) releaseWith(app string, replicas int, extra, digest string) int {
	h.t.Helper()
	spec := fmt.Sprintf("name: %s\ncommand: ./run.sh\nreplicas: %d\n%s", app, replicas, extra)
	rel, err := h.store.CreateRelease(h.ctx, store.NewRelease{
		App: app, SpecFile: "skiff.yaml", Spec: []byte(spec), Artifact: digest,
		Hosts: []string{app + ".apps.test"}, Replicas: &replicas,
	})
	if err != nil {
		h.t.Fatalf("create release: %v", err)
	}
	return rel.Number
}

func (h *harness) sync(app string) {
	h.t.Helper()
	if err := h.c.sync(h.ctx, app); err != nil {
		h.t.Fatalf("sync %s: %v", app, err)
	}
}

func (h *harness) app(name string) store.App {
	h.t.Helper()
	a, err := h.store.App(h.ctx, name)
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

func (h *harness) rel(app string, n int) store.Release {
	h.t.Helper()
	r, err := h.store.Release(h.ctx, app, n)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

// deployReady brings release n of app to complete with every instance
// ready, syncing as the loop would.
func (h *harness) deployReady(app string, n int) {
	h.t.Helper()
	for range 50 {
		if h.rel(app, n).Status != store.StatusPending {
			break
		}
		h.sync(app)
		h.rt.readyAll(app)
	}
	if got := h.rel(app, n).Status; got != store.StatusComplete {
		h.t.Fatalf("release %d of %s is %s after 50 syncs, want complete", n, app, got)
	}
}

// checkRetired asserts the order in which id left: marked draining, out
// of the edge's routes (a snapshot without it applied, unless it was
// never routed), drained at the edge, then removed; and never routed
// again once marked.
func (h *harness) checkRetired(id string) {
	h.t.Helper()
	log := h.log.all()
	marked, drained, removed := -1, -1, -1
	for i, e := range log {
		switch {
		case e.kind == "mark-draining" && e.id == id && marked < 0:
			marked = i
		case e.kind == "drain" && e.id == id && drained < 0:
			drained = i
		case e.kind == "remove" && e.id == id && removed < 0:
			removed = i
		}
	}
	if removed < 0 {
		h.t.Errorf("instance %s was never removed", id)
		return
	}
	if marked < 0 || drained < 0 || !(marked < drained && drained < removed) {
		h.t.Errorf("instance %s: mark-draining at %d, drain at %d, remove at %d; want them in that order", id, marked, drained, removed)
		return
	}
	// The edge serves the last snapshot applied before the drain.
	for i := drained - 1; i >= 0; i-- {
		if log[i].kind == "apply" {
			if routes(log[i].snap, id) {
				h.t.Errorf("instance %s drained while the edge's snapshot (generation %d) still routes to it", id, log[i].snap.Generation)
			}
			break
		}
	}
	for _, e := range log[marked:] {
		if e.kind == "apply" && routes(e.snap, id) {
			h.t.Errorf("instance %s routed again in generation %d after it was marked draining", id, e.snap.Generation)
		}
	}
}

// routes reports whether s sends any host to instance id.
func routes(s *edge.Snapshot, id string) bool {
	for _, r := range s.Routes {
		for _, b := range r.Backends {
			if b.ID == id {
				return true
			}
		}
	}
	return false
}

func TestDestroy(t *testing.T) {
	h := newHarness(t)
	shared := h.artifact("shared")
	// hello: release 1 serving two instances, release 2 starting; other
	// shares release 1's archive, which must therefore stay.
	h.releaseWith("hello", 2, "", shared)
	h.deployReady("hello", 1)
	h.release("hello", 2, "# v2\n")
	h.sync("hello")
	own := h.rel("hello", 2).Artifact
	h.releaseWith("other", 1, "", shared)
	h.deployReady("other", 1)
	helloIDs := ids(h.rt.instances("hello", 0))
	if len(helloIDs) != 3 {
		t.Fatalf("hello runs %v, want 2 old and 1 new instance", helloIDs)
	}
	for _, dir := range []string{"hello/1", "hello/2", "other/1"} {
		if _, err := os.Stat(filepath.Join(h.releasesDir, dir)); err != nil {
			t.Fatalf("release files %s: %v", dir, err)
		}
	}

	if err := h.store.MarkDeleting(h.ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	start := len(h.log.all())
	h.sync("hello")

	// Out of the routes first, then each instance drained, then the sets
	// stopped.
	var unrouted int = -1
	drained := map[string]int{}
	deleted := map[string]int{}
	for i, e := range h.log.all()[start:] {
		switch e.kind {
		case "apply":
			if unrouted < 0 && !hasHost(e.snap, "hello.apps.test") {
				unrouted = i
				if !hasHost(e.snap, "other.apps.test") || len(backends(e.snap, "other.apps.test")) != 1 {
					t.Errorf("snapshot without hello lost other's route: %+v", e.snap.Routes)
				}
			}
		case "drain":
			drained[e.id] = i
		case "delete-set":
			deleted[e.id] = i
		case "remove", "scale":
			t.Errorf("destroy called %s %s", e.kind, e.id)
		}
	}
	if unrouted < 0 {
		t.Fatal("no snapshot without hello's routes was applied")
	}
	for _, id := range helloIDs {
		at, ok := drained[id]
		if !ok || at < unrouted {
			t.Errorf("instance %s drained at %d (ok %v), want after its routes left at %d", id, at, ok, unrouted)
		}
	}
	for _, set := range []string{"hello/1", "hello/2"} {
		at, ok := deleted[set]
		if !ok {
			t.Errorf("set %s was not deleted", set)
			continue
		}
		// Instance ids of the fake runtime start with app-release-.
		prefix := strings.ReplaceAll(set, "/", "-") + "-"
		for id, d := range drained {
			if strings.HasPrefix(id, prefix) && at < d {
				t.Errorf("set %s deleted at %d before its instance %s was drained at %d", set, at, id, d)
			}
		}
	}

	if _, err := h.store.App(h.ctx, "hello"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("hello after destroy: %v, want ErrNotFound", err)
	}
	if apps, _ := h.rt.Apps(h.ctx); !slices.Equal(apps, []string{"other"}) {
		t.Errorf("runtime apps = %v, want [other]", apps)
	}
	if h.arts.Has(own) {
		t.Error("hello's own artifact is still stored")
	}
	if !h.arts.Has(shared) {
		t.Error("the artifact other still uses was removed")
	}
	if _, err := os.Stat(filepath.Join(h.releasesDir, "hello")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("hello's release files: %v, want them gone", err)
	}
	if _, err := os.Stat(filepath.Join(h.releasesDir, "other", "1")); err != nil {
		t.Errorf("other's release files: %v", err)
	}
	if !slices.Equal(h.logs.deleted, []string{"hello"}) {
		t.Errorf("logs deleted for %v, want [hello]", h.logs.deleted)
	}
	evs, err := h.store.Events(h.ctx, store.EventQuery{App: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) == 0 || evs[len(evs)-1].Kind != "app.destroyed" {
		t.Errorf("last hello event = %+v, want app.destroyed", evs)
	}

	// A later sync of the gone app finds nothing to do.
	before := len(h.log.all())
	h.sync("hello")
	for _, e := range h.log.all()[before:] {
		if e.kind != "apply" {
			t.Errorf("sync of a destroyed app called %s %s", e.kind, e.id)
		}
	}
	if len(h.logs.deleted) != 1 {
		t.Errorf("logs deleted again: %v", h.logs.deleted)
	}
}

// TestTeardownUnknownApp checks that instances of an app the store does
// not know (destroyed while the server was down, or a leftover) are
// stopped, and that nothing is purged for it.
func TestTeardownUnknownApp(t *testing.T) {
	h := newHarness(t)
	h.releaseWith("keep", 1, "", h.artifact("keep"))
	h.deployReady("keep", 1)
	for _, rel := range []int{3, 4} {
		if err := h.rt.Scale(h.ctx, instance.Template{App: "ghost", Release: rel}, 2); err != nil {
			t.Fatal(err)
		}
	}
	h.rt.readyAll("ghost")
	ghosts := ids(h.rt.instances("ghost", 0))

	// The resync finds it although the store does not list it.
	h.c.enqueueAll(h.ctx)
	h.c.queue.mu.Lock()
	queued := slices.Clone(h.c.queue.order)
	h.c.queue.mu.Unlock()
	slices.Sort(queued)
	if !slices.Equal(queued, []string{"ghost", "keep"}) {
		t.Errorf("enqueueAll queued %v, want ghost and keep", queued)
	}

	start := len(h.log.all())
	h.sync("ghost")
	var drained, deleted []string
	for _, e := range h.log.all()[start:] {
		switch e.kind {
		case "drain":
			drained = append(drained, e.id)
		case "delete-set":
			deleted = append(deleted, e.id)
		}
	}
	slices.Sort(drained)
	if !slices.Equal(drained, ghosts) {
		t.Errorf("drained %v, want %v", drained, ghosts)
	}
	if !slices.Equal(deleted, []string{"ghost/3", "ghost/4"}) {
		t.Errorf("deleted sets %v, want ghost/3 and ghost/4", deleted)
	}
	if apps, _ := h.rt.Apps(h.ctx); !slices.Equal(apps, []string{"keep"}) {
		t.Errorf("runtime apps = %v, want [keep]", apps)
	}
	if len(h.logs.deleted) != 0 {
		t.Errorf("logs deleted for %v; an unknown app has nothing to purge", h.logs.deleted)
	}
	if h.app("keep").Target != 1 {
		t.Error("keep changed")
	}
}

// TestPrime checks that a starting server routes to the instances that
// already run (adopted after a restart) before any sync, waiting a while
// for adopted instances to pass their first probe.
func TestPrime(t *testing.T) {
	h := newHarness(t)
	h.release("hello", 2, "")
	h.deployReady("hello", 1)
	running := ids(h.rt.instances("hello", 0))
	scales := len(h.log.all())

	// A new controller over the same store and runtime, as after a restart.
	restart := func() (*Controller, *fakeEdge) {
		e := &fakeEdge{log: &journal{}}
		return New(Config{Store: h.store, Runtime: h.rt, Edge: e, Artifacts: h.arts, ReleasesDir: h.releasesDir,
			Logger: slog.New(slog.DiscardHandler)}), e
	}

	t.Run("ready instances", func(t *testing.T) {
		c, e := restart()
		if err := c.Prime(h.ctx, time.Minute); err != nil {
			t.Fatal(err)
		}
		snaps := e.applied()
		if len(snaps) != 1 || !slices.Equal(backends(snaps[0], host), running) {
			t.Fatalf("prime applied %d snapshots, last routing %v; want one routing %v", len(snaps), backends(e.last(), host), running)
		}
	})

	t.Run("no waiting past the deadline", func(t *testing.T) {
		h.rt.setState("hello", running[0], instance.Starting)
		c, e := restart()
		if err := c.Prime(h.ctx, 0); err != nil {
			t.Fatal(err)
		}
		if got := backends(e.last(), host); !slices.Equal(got, running[1:]) {
			t.Errorf("routes %v, want only the ready %v", got, running[1:])
		}
	})

	t.Run("waits for the first probe", func(t *testing.T) {
		h.rt.setState("hello", running[0], instance.Starting)
		c, e := restart()
		probed := make(chan struct{})
		// The instance passes its probe once Prime has looked at least
		// twice.
		h.rt.mu.Lock()
		h.rt.setsCalls = 0
		h.rt.onSets = func(calls int) {
			if calls == 2 {
				close(probed)
			}
		}
		h.rt.mu.Unlock()
		go func() {
			<-probed
			h.rt.setState("hello", running[0], instance.Ready)
		}()
		if err := c.Prime(h.ctx, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if got := backends(e.last(), host); !slices.Equal(got, running) {
			t.Errorf("routes %v, want %v once the adopted instance is ready", got, running)
		}
		if n := len(e.applied()); n != 1 {
			t.Errorf("prime applied %d snapshots, want one", n)
		}
	})

	for _, en := range h.log.all()[scales:] {
		if en.kind != "apply" {
			t.Errorf("prime changed what runs: %s %s", en.kind, en.id)
		}
	}
}
