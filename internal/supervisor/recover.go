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
// Recovery reads sets.json and asks the Driver which processes claim to be
// this node's instances. A claim is only that: a process app can read its
// own variables and start a process carrying another instance's. So a
// running instance is adopted, not restarted, only when it is the very
// process skiff recorded starting (the same PID and Ref, see sameProcess)
// and its set still wants it. Any other process claiming a recorded
// instance is stopped and reported (impostor_stopped), and the instance
// started again; running instances of unknown sets or beyond a set's size
// are stopped too (orphan_stopped). The reconciled state is recorded,
// impostors and orphans are stopped, and then missing instances are
// started. Start returns once that is done.
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

	// Impostors and orphans go first: one may hold a fixed port a new
	// instance needs.
	var wg sync.WaitGroup
	for _, imp := range plan.impostors {
		h := imp.h
		s.log.Warn("stopping a process that claims to be an instance", "app", h.App, "release", h.Release,
			"instance", h.ID, "pid", h.PID, "reason", imp.reason)
		wg.Go(func() {
			// Only Stop: the instance's cgroup, log and name are the
			// real instance's, which may run on or start again.
			if err := s.driver.Stop(context.WithoutCancel(ctx), h, s.opts.StopGrace); err != nil {
				s.log.Error("could not stop a process that claims to be an instance", "instance", h.ID, "pid", h.PID, "err", err)
			}
			s.emit(Event{App: h.App, Release: h.Release, Instance: h.ID, Kind: EventImpostorStopped, Message: imp.reason,
				Data: map[string]any{"pid": h.PID}})
		})
	}
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
		"started", len(plan.toStart), "orphans_stopped", len(plan.orphans), "impostors_stopped", len(plan.impostors))
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
	sets      map[setKey]*set
	adopted   []*inst    // running and wanted: watched, not restarted
	toStart   []*inst    // wanted but not running
	orphans   []Handle   // running and not wanted: stopped
	impostors []impostor // claiming a recorded instance they are not: stopped
}

// impostor is a process that carries a recorded instance's identity but is
// not the process skiff recorded starting for it.
type impostor struct {
	h      Handle
	reason string
}

// sameProcess reports whether found, as the Driver's Recover reports it,
// is the process recorded when it was started: the same Ref (the
// process's start time and uid, a container's ID) and, when one was
// recorded, the same PID. A recorded Ref that is empty proves nothing.
func sameProcess(recorded, found Handle) bool {
	return recorded.Ref != "" && recorded.Ref == found.Ref && (recorded.PID == 0 || recorded.PID == found.PID)
}

// planRecovery reconciles the recorded sets with the running instances.
// Each set keeps exactly its recorded size: running recorded instances
// first (oldest first), then recorded ones that no longer run, then new
// ids. Several running processes may claim one id; at most the one that
// is the recorded process is adopted.
func planRecovery(state stateFile, running []Handle, now time.Time) recoveryPlan {
	p := recoveryPlan{sets: make(map[setKey]*set)}
	byKey := make(map[setKey]map[string][]Handle)
	for _, h := range running {
		key := setKey{h.App, h.Release}
		if byKey[key] == nil {
			byKey[key] = make(map[string][]Handle)
		}
		byKey[key][h.ID] = append(byKey[key][h.ID], h)
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
		// Recorded and running: adopted when it is the recorded process.
		for _, r := range records {
			claims, ok := live[r.ID]
			if !ok {
				continue
			}
			delete(live, r.ID)
			var real *Handle
			for _, h := range claims {
				if real == nil && r.Handle != nil && sameProcess(*r.Handle, h) {
					real = &h
					continue
				}
				p.impostors = append(p.impostors, impostor{h, impostorReason(r, h)})
			}
			if real == nil {
				continue
			}
			if !room() {
				p.orphans = append(p.orphans, *real)
				continue
			}
			in := adoptedInst(key, r.ID, r.Created, *real)
			in.draining, in.restarts = r.Draining, r.Restarts
			st.insts[in.id] = in
			p.adopted = append(p.adopted, in)
		}
		// Running but not recorded: every id is recorded before its first
		// start, so these left the set (Remove, a shrink) right before a
		// crash that kept them from being stopped.
		for _, claims := range live {
			p.orphans = append(p.orphans, claims...)
		}
		// Recorded but not running: it exited while skiff was away, or
		// was never started, or what runs under its id is not it.
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
	for _, ids := range byKey {
		for _, claims := range ids {
			p.orphans = append(p.orphans, claims...)
		}
	}
	byID := func(a, b Handle) int { return cmp.Or(cmp.Compare(a.ID, b.ID), cmp.Compare(a.PID, b.PID)) }
	slices.SortFunc(p.orphans, byID)
	slices.SortFunc(p.impostors, func(a, b impostor) int { return byID(a.h, b.h) })
	return p
}

// impostorReason says why h, claiming the instance of r, is not adopted.
func impostorReason(r instanceRecord, h Handle) string {
	if r.Handle == nil || r.Handle.Ref == "" {
		return fmt.Sprintf("pid %d carries the identity of instance %s, which skiff has no record of starting "+
			"(a crash right after a start leaves one too); stopped, never routed", h.PID, r.ID)
	}
	return fmt.Sprintf("pid %d carries the identity of instance %s but is not the process skiff started for it "+
		"(pid %d, %s); stopped, never routed", h.PID, r.ID, r.Handle.PID, r.Handle.Ref)
}

func adoptedInst(key setKey, id string, created time.Time, h Handle) *inst {
	return &inst{id: id, key: key, created: created, h: h, running: true, state: instance.Starting,
		message: "adopted; waiting for the first passing probe"}
}
