package supervisor

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
)

// Sets reports every instance set of app, by release, instances by id.
// The values are copies.
func (s *Supervisor) Sets(ctx context.Context, app string) ([]instance.Set, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.readyLocked(); err != nil {
		return nil, fmt.Errorf("list sets of %s: %w", app, err)
	}
	out := []instance.Set{}
	for key, st := range s.sets {
		if key.app != app {
			continue
		}
		set := instance.Set{App: key.app, Release: key.release, Size: len(st.insts), Instances: []instance.Instance{}}
		for _, in := range st.insts {
			set.Instances = append(set.Instances, reportLocked(in))
		}
		slices.SortFunc(set.Instances, func(a, b instance.Instance) int { return cmp.Compare(a.ID, b.ID) })
		out = append(out, set)
	}
	slices.SortFunc(out, func(a, b instance.Set) int { return cmp.Compare(a.Release, b.Release) })
	return out, nil
}

// reportLocked describes one instance. Callers hold s.mu.
func reportLocked(in *inst) instance.Instance {
	r := instance.Instance{
		ID:        in.id,
		App:       in.key.app,
		Release:   in.key.release,
		State:     instanceState(in),
		Restarts:  in.restarts,
		NextStart: in.nextStart,
		Message:   in.message,
	}
	if in.running {
		r.Endpoint = in.h.Endpoint
		r.Ports = maps.Clone(in.h.Ports)
		r.PID = in.h.PID
		r.StartedAt = in.h.StartedAt
	}
	if in.lastExit != nil {
		e := *in.lastExit
		e.LogTail = slices.Clone(e.LogTail)
		r.LastExit = &e
	}
	return r
}

// Apps lists the apps that have any set, sorted.
func (s *Supervisor) Apps(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.readyLocked(); err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	var apps []string
	for key := range s.sets {
		if !slices.Contains(apps, key.app) {
			apps = append(apps, key.app)
		}
	}
	slices.Sort(apps)
	return apps, nil
}

// Watch calls fn with an app's name whenever one of its instances changes
// state. Calls come from one goroutine of the supervisor's, never under its
// locks; a slow fn delays later calls, not the supervisor.
func (s *Supervisor) Watch(fn func(app string)) { s.notify.add(fn) }

// Scale makes the set of t.Release hold n instances, creating it if
// needed. Growing records the new size and ids before starting anything;
// shrinking records the smaller set first, then stops the instances that
// left it, newest not-ready ones first, and waits for them.
func (s *Supervisor) Scale(ctx context.Context, t instance.Template, n int) error {
	if t.App == "" || t.Release <= 0 {
		return fmt.Errorf("scale: %w: template needs an app and a release above 0 (got %q, %d)", ErrInvalid, t.App, t.Release)
	}
	if n < 0 {
		return fmt.Errorf("scale %s release %d: %w: size %d is negative", t.App, t.Release, ErrInvalid, n)
	}
	l := s.appLock(t.App)
	l.Lock()
	defer l.Unlock()

	key := setKey{t.App, t.Release}
	s.mu.Lock()
	if err := s.readyLocked(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("scale %s release %d: %w", t.App, t.Release, err)
	}
	st, existed := s.sets[key]
	if !existed {
		st = &set{insts: make(map[string]*inst)}
		s.sets[key] = st
	}
	oldTmpl := st.tmpl
	st.tmpl = t
	var added, removed []*inst
	now := time.Now()
	for len(st.insts) < n {
		in := &inst{id: s.newIDLocked(key), key: key, created: now, state: instance.Starting, message: "not started yet"}
		st.insts[in.id] = in
		added = append(added, in)
	}
	if len(st.insts) > n {
		removed = leavers(st, len(st.insts)-n)
		for _, in := range removed {
			delete(st.insts, in.id)
		}
	}
	s.mu.Unlock()

	if err := s.persist(); err != nil {
		s.mu.Lock()
		for _, in := range added {
			delete(st.insts, in.id)
		}
		for _, in := range removed {
			st.insts[in.id] = in
		}
		st.tmpl = oldTmpl
		if !existed {
			delete(s.sets, key)
		}
		s.mu.Unlock()
		return fmt.Errorf("scale %s release %d to %d: %w", t.App, t.Release, n, err)
	}
	if len(added) > 0 {
		s.hook("scale.persisted")
	}
	if len(removed) > 0 {
		s.hook("shrink.persisted")
	}
	s.mu.Lock()
	for _, in := range added {
		s.launchLocked(in, t, false)
	}
	s.mu.Unlock()
	s.retireAll(ctx, removed, EventStopped, "scaled down")
	if len(added) > 0 || len(removed) > 0 {
		s.notify.send(t.App)
	}
	return nil
}

// leavers picks the k instances that leave a shrinking set: draining ones
// first, then others that are not ready, then ready ones; newest first
// within each.
func leavers(st *set, k int) []*inst {
	all := make([]*inst, 0, len(st.insts))
	for _, in := range st.insts {
		all = append(all, in)
	}
	rank := func(in *inst) int {
		switch {
		case in.draining:
			return 0
		case in.state != instance.Ready:
			return 1
		}
		return 2
	}
	slices.SortFunc(all, func(a, b *inst) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), b.created.Compare(a.created), cmp.Compare(b.id, a.id))
	})
	return all[:k]
}

// instanceLocked finds app's instance id once the supervisor has
// started; s.mu must be held.
func (s *Supervisor) instanceLocked(app, id string) (*inst, *set, error) {
	if err := s.readyLocked(); err != nil {
		return nil, nil, err
	}
	in, st := s.findLocked(app, id)
	if in == nil {
		return nil, nil, fmt.Errorf("instance %s of %s: %w", id, app, ErrInstanceNotFound)
	}
	return in, st, nil
}

// MarkDraining reports the instance as Draining from now on, also across
// a restart of the supervisor.
func (s *Supervisor) MarkDraining(ctx context.Context, app, id string) error {
	l := s.appLock(app)
	l.Lock()
	defer l.Unlock()
	s.mu.Lock()
	in, _, err := s.instanceLocked(app, id)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("drain instance %s: %w", id, err)
	}
	was := in.draining
	in.draining = true
	s.mu.Unlock()
	if was {
		return nil
	}
	s.notify.send(app)
	if err := s.persist(); err != nil {
		return fmt.Errorf("drain instance %s: %w", id, err)
	}
	return nil
}

// Remove stops one instance and shrinks its set by one. The smaller set
// is recorded first, so a crash during the stop leaves an instance the
// next Start stops as an orphan.
func (s *Supervisor) Remove(ctx context.Context, app, id string) error {
	l := s.appLock(app)
	l.Lock()
	defer l.Unlock()
	s.mu.Lock()
	in, st, err := s.instanceLocked(app, id)
	if err != nil {
		s.mu.Unlock()
		return fmt.Errorf("remove instance %s: %w", id, err)
	}
	delete(st.insts, id)
	s.mu.Unlock()
	if err := s.persist(); err != nil {
		s.mu.Lock()
		st.insts[id] = in
		s.mu.Unlock()
		return fmt.Errorf("remove instance %s: %w", id, err)
	}
	s.hook("remove.persisted")
	s.retireAll(ctx, []*inst{in}, EventStopped, "removed")
	s.notify.send(app)
	return nil
}

// DeleteSet stops every instance of the release's set, all at once, and
// forgets the set. A set that does not exist is already deleted.
func (s *Supervisor) DeleteSet(ctx context.Context, app string, release int) error {
	l := s.appLock(app)
	l.Lock()
	defer l.Unlock()
	key := setKey{app, release}
	s.mu.Lock()
	if err := s.readyLocked(); err != nil {
		s.mu.Unlock()
		return fmt.Errorf("delete set %s release %d: %w", app, release, err)
	}
	st := s.sets[key]
	if st == nil {
		s.mu.Unlock()
		return nil
	}
	delete(s.sets, key)
	s.mu.Unlock()
	if err := s.persist(); err != nil {
		s.mu.Lock()
		s.sets[key] = st
		s.mu.Unlock()
		return fmt.Errorf("delete set %s release %d: %w", app, release, err)
	}
	s.hook("deleteset.persisted")
	var all []*inst
	for _, in := range st.insts {
		all = append(all, in)
	}
	s.retireAll(ctx, all, EventStopped, "set deleted")
	s.notify.send(app)
	return nil
}

// findLocked finds instance id among app's sets. Callers hold s.mu.
func (s *Supervisor) findLocked(app, id string) (*inst, *set) {
	for key, st := range s.sets {
		if key.app != app {
			continue
		}
		if in := st.insts[id]; in != nil {
			return in, st
		}
	}
	return nil, nil
}

// retireAll stops instances that already left their sets, concurrently,
// and waits for them. The stops run to the end even if ctx ends: an
// instance left half-stopped would be recorded nowhere until the next
// Start.
func (s *Supervisor) retireAll(ctx context.Context, ins []*inst, kind, why string) {
	ctx = context.WithoutCancel(ctx)
	var wg sync.WaitGroup
	for _, in := range ins {
		wg.Go(func() {
			s.halt(in)
			s.mu.Lock()
			h := in.h
			s.mu.Unlock()
			s.stopHandle(ctx, in.key, in.id, h, kind, why)
		})
	}
	wg.Wait()
}

// stopHandle stops and cleans up one instance that no set wants, and
// reports it.
func (s *Supervisor) stopHandle(ctx context.Context, key setKey, id string, h Handle, kind, why string) {
	log := s.log.With("app", key.app, "release", key.release, "instance", id)
	if h.ID != "" {
		if err := s.driver.Stop(ctx, h, s.opts.StopGrace); err != nil {
			log.Error("could not stop instance", "err", err)
		}
	} else {
		h = Handle{ID: id, App: key.app, Release: key.release}
	}
	if err := s.driver.Cleanup(ctx, h); err != nil {
		log.Warn("could not clean up after instance", "err", err)
	}
	if s.opts.Logs != nil {
		s.opts.Logs.Untrack(id)
	}
	log.Info("instance stopped", "why", why)
	s.emit(Event{App: key.app, Release: key.release, Instance: id, Kind: kind, Message: why})
}

// idAlphabet is what instance id suffixes are made of: safe in DNS
// labels, file names and URLs.
const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newIDLocked returns an instance id no set of the app uses. Callers hold
// s.mu.
func (s *Supervisor) newIDLocked(key setKey) string {
	return newID(key, func(id string) bool {
		in, _ := s.findLocked(key.app, id)
		return in != nil
	})
}

// newID returns an id "<app>-<release>-<5 random chars>" that is not taken.
func newID(key setKey, taken func(string) bool) string {
	for {
		b := make([]byte, 5)
		_, _ = rand.Read(b) // never fails on Linux
		for i := range b {
			// The slight modulo bias is irrelevant for an id that only
			// needs to be unique within its app.
			b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
		}
		id := fmt.Sprintf("%s-%d-%s", key.app, key.release, b)
		if !taken(id) {
			return id
		}
	}
}
