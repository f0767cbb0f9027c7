package supervisor

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
)

// Start recovers and then keeps every set at size until ctx ends or Close.
//
// Recovery reads sets.json and asks the Driver which of this node's
// instances still run. A running instance of a known set is adopted, not
// restarted, as long as the set wants it: recorded ids first, then ones
// started just before a crash and never recorded. Running instances of
// unknown sets or beyond a set's size are stopped (orphan_stopped). The
// reconciled state is recorded, orphans are stopped, and then missing
// instances are started. Start returns once that is done.
func (s *Supervisor) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("start supervisor: %w", ErrClosed)
	}
	if s.started || s.starting {
		s.mu.Unlock()
		return fmt.Errorf("start supervisor: already started")
	}
	s.starting = true
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.starting = false
		s.mu.Unlock()
	}()

	state, err := loadState(s.path)
	if err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}
	running, err := s.driver.Recover(ctx)
	if err != nil {
		// Without knowing what runs, starting anything could duplicate it.
		return fmt.Errorf("start supervisor: recover instances: %w", err)
	}
	plan := planRecovery(state, running, time.Now())

	s.mu.Lock()
	s.sets = plan.sets
	s.mu.Unlock()
	if err := s.persist(); err != nil {
		return fmt.Errorf("start supervisor: %w", err)
	}

	// Orphans go first: one may hold a fixed port a new instance needs.
	var wg sync.WaitGroup
	for _, h := range plan.orphans {
		wg.Go(func() {
			s.stopHandle(context.WithoutCancel(ctx), setKey{h.App, h.Release}, h.ID, h, EventOrphanStopped,
				"no set wants it after a restart of skiff")
		})
	}
	wg.Wait()

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return fmt.Errorf("start supervisor: %w", ErrClosed)
	}
	s.ctx, s.cancel = context.WithCancel(ctx)
	s.started = true
	for _, in := range plan.adopted {
		s.launchLocked(in, plan.sets[in.key].tmpl, true)
	}
	for _, in := range plan.toStart {
		s.launchLocked(in, plan.sets[in.key].tmpl, false)
	}
	s.mu.Unlock()

	for _, in := range plan.adopted {
		s.log.Info("adopted a running instance", "app", in.key.app, "release", in.key.release, "instance", in.id, "pid", in.h.PID)
		s.emit(Event{App: in.key.app, Release: in.key.release, Instance: in.id, Kind: EventAdopted,
			Message: fmt.Sprintf("still running as pid %d at %s; adopted", in.h.PID, in.h.Endpoint)})
		if s.opts.Logs != nil {
			s.opts.Logs.Track(in.key.app, in.key.release, in.id, s.driver.LogPath(in.h))
		}
	}
	s.log.Info("supervisor recovered", "sets", len(plan.sets), "adopted", len(plan.adopted),
		"started", len(plan.toStart), "orphans_stopped", len(plan.orphans))
	apps := map[string]bool{}
	for key := range plan.sets {
		apps[key.app] = true
	}
	for app := range apps {
		s.notify.send(app)
	}
	return nil
}

// recoveryPlan is what Start does with what it found.
type recoveryPlan struct {
	sets    map[setKey]*set
	adopted []*inst  // running and wanted: watched, not restarted
	toStart []*inst  // wanted but not running
	orphans []Handle // running and not wanted: stopped
}

// planRecovery reconciles the recorded sets with the running instances.
// Each set keeps exactly its recorded size: running recorded instances
// first (oldest first), then recorded ones that no longer run, then new
// ids.
func planRecovery(state stateFile, running []Handle, now time.Time) recoveryPlan {
	p := recoveryPlan{sets: make(map[setKey]*set)}
	byKey := make(map[setKey]map[string]Handle)
	for _, h := range running {
		key := setKey{h.App, h.Release}
		if byKey[key] == nil {
			byKey[key] = make(map[string]Handle)
		}
		byKey[key][h.ID] = h
	}
	for _, rec := range state.Sets {
		key := setKey{rec.Template.App, rec.Template.Release}
		if p.sets[key] != nil {
			continue // a duplicate record: the first one counts
		}
		st := &set{tmpl: rec.Template, insts: make(map[string]*inst)}
		p.sets[key] = st
		live := byKey[key]
		delete(byKey, key)
		records := slices.Clone(rec.Instances)
		slices.SortFunc(records, func(a, b instanceRecord) int {
			return cmp.Or(a.Created.Compare(b.Created), cmp.Compare(a.ID, b.ID))
		})
		room := func() bool { return len(st.insts) < rec.Size }
		// Recorded and running.
		for _, r := range records {
			h, ok := live[r.ID]
			if !ok {
				continue
			}
			delete(live, r.ID)
			if !room() {
				p.orphans = append(p.orphans, h)
				continue
			}
			in := adoptedInst(key, r.ID, r.Created, h)
			in.draining, in.restarts = r.Draining, r.Restarts
			st.insts[in.id] = in
			p.adopted = append(p.adopted, in)
		}
		// Running but not recorded: every id is recorded before its first
		// start, so these left the set (Remove, a shrink) right before a
		// crash that kept them from being stopped.
		for _, h := range live {
			p.orphans = append(p.orphans, h)
		}
		// Recorded but not running: it exited while skiff was away, or
		// was never started.
		for _, r := range records {
			if !room() {
				break
			}
			if st.insts[r.ID] != nil {
				continue
			}
			in := &inst{id: r.ID, key: key, created: r.Created, state: instance.Starting,
				message: "not started yet", draining: r.Draining, restarts: r.Restarts}
			if r.Handle != nil {
				in.restarts++
				in.lastExit = &instance.Exit{Code: -1, At: now}
				in.message = "exited while skiff was not running; starting it again"
			}
			st.insts[in.id] = in
			p.toStart = append(p.toStart, in)
		}
		// A size larger than the ids recorded for it.
		for room() {
			in := &inst{id: newID(key, func(id string) bool { return st.insts[id] != nil }), key: key,
				created: now, state: instance.Starting, message: "not started yet"}
			st.insts[in.id] = in
			p.toStart = append(p.toStart, in)
		}
	}
	// Instances of sets nobody recorded.
	keys := make([]setKey, 0, len(byKey))
	for key := range byKey {
		keys = append(keys, key)
	}
	for _, key := range keys {
		for _, h := range byKey[key] {
			p.orphans = append(p.orphans, h)
		}
	}
	slices.SortFunc(p.orphans, func(a, b Handle) int { return cmp.Compare(a.ID, b.ID) })
	return p
}

func adoptedInst(key setKey, id string, created time.Time, h Handle) *inst {
	return &inst{id: id, key: key, created: created, h: h, running: true, state: instance.Starting,
		message: "adopted; waiting for the first passing probe"}
}
