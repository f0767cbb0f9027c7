package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/store"
)

// crashLimit is how many restarts of a new release's instance fail its
// deploy.
const crashLimit = 2

// rollout is one sync's view of an app: desired state and what runs. Its
// step is a rolling update with max surge 1 and max unavailable 0: a new
// instance starts, and an old one leaves only once enough new ones are
// ready, so the app never has fewer ready instances than it wants.
type rollout struct {
	c    *Controller
	app  store.App
	sets []instance.Set

	rel          *store.Release // the target release, nil when the app has none
	tmpl         instance.Template
	readyTimeout time.Duration
}

func (r *rollout) step(ctx context.Context) error {
	var cur *instance.Set
	var old []instance.Set
	for i := range r.sets {
		if r.rel != nil && r.sets[i].Release == r.rel.Number {
			cur = &r.sets[i]
		} else {
			old = append(old, r.sets[i])
		}
	}
	want := r.app.Replicas
	if r.rel == nil {
		want = 0
	}
	pending := r.rel != nil && r.rel.Status == "pending"

	curSize, curReady := 0, 0
	if cur != nil {
		curSize, curReady = cur.Size, cur.Ready()
	}
	if pending {
		if reason := r.failure(cur, curReady); reason != "" {
			r.c.log.Warn("deploy failed", "app", r.app.Name, "release", r.rel.Number, "reason", reason)
			if err := r.c.cfg.Store.FinishRelease(ctx, r.app.Name, r.rel.Number, "failed", reason); err != nil {
				return err
			}
			r.c.queue.Add(r.app.Name) // retire the failed set at once
			return nil
		}
	}

	oldLive, oldReady := 0, 0
	for _, set := range old {
		oldLive += len(set.Instances)
		oldReady += set.Ready()
	}

	// Grow the target set, keeping at most one instance beyond want while
	// old ones still run.
	if curSize < want {
		if limit := min(want, want+1-oldLive); limit > curSize {
			if err := r.c.cfg.Runtime.Scale(ctx, r.tmpl, limit); err != nil {
				return fmt.Errorf("scale release %d of %s to %d: %w", r.rel.Number, r.app.Name, limit, err)
			}
			return nil // the runtime's watch brings us back
		}
	}
	// Shrink it when scaled down.
	if cur != nil && curSize > want {
		if len(cur.Instances) == 0 {
			// The set's size runs ahead of its instances (none started
			// yet): shrinking it stops nothing that serves.
			return r.c.cfg.Runtime.Scale(ctx, r.tmpl, want)
		}
		return r.retire(ctx, leaving(cur.Instances)[0])
	}
	// Retire old instances while enough others are ready; one not ready
	// carries no traffic and goes at once.
	for _, set := range old {
		for _, in := range leaving(set.Instances) {
			if in.State != instance.Ready || curReady+oldReady-1 >= want {
				return r.retire(ctx, in)
			}
		}
	}
	for _, set := range old {
		if len(set.Instances) == 0 {
			if err := r.c.cfg.Runtime.DeleteSet(ctx, r.app.Name, set.Release); err != nil {
				return fmt.Errorf("forget release %d of %s: %w", set.Release, r.app.Name, err)
			}
		}
	}
	if pending && oldLive == 0 && curSize == want && curReady == want {
		msg := fmt.Sprintf("release %d serves with %d ready instance(s)", r.rel.Number, want)
		if r.rel.RollbackOf != 0 {
			msg += fmt.Sprintf(" (rollback to release %d)", r.rel.RollbackOf)
		}
		return r.c.cfg.Store.FinishRelease(ctx, r.app.Name, r.rel.Number, "complete", msg)
	}
	if pending {
		// Come back when the ready deadline would pass, even if nothing
		// changes before.
		r.c.queue.AddAfter(r.app.Name, r.readyTimeout/4+time.Second)
	}
	return nil
}

// retire removes one instance and comes back for the next step.
func (r *rollout) retire(ctx context.Context, in instance.Instance) error {
	if err := r.c.retire(ctx, r.app.Name, r.app.Hosts, in); err != nil {
		return err
	}
	r.c.queue.Add(r.app.Name)
	return nil
}

// failure says why the target release's deploy has failed, or "".
func (r *rollout) failure(cur *instance.Set, ready int) string {
	since := r.c.moved(r.app.Name, r.rel.Number, ready)
	if cur == nil {
		return ""
	}
	for _, in := range cur.Instances {
		if in.State == instance.CrashLoop && in.Restarts >= crashLimit && in.LastExit != nil {
			return crashReport(in)
		}
	}
	if ready < r.app.Replicas && time.Since(since) > r.readyTimeout {
		var why []string
		for _, in := range cur.Instances {
			if in.State != instance.Ready && in.Message != "" {
				why = append(why, fmt.Sprintf("%s: %s", in.ID, in.Message))
			}
		}
		msg := fmt.Sprintf("%d of %d instance(s) ready after waiting %s (health.ready_timeout)", ready, r.app.Replicas, r.readyTimeout)
		if len(why) > 0 {
			msg += "; " + strings.Join(why, "; ")
		}
		return msg
	}
	return ""
}

func crashReport(in instance.Instance) string {
	e := in.LastExit
	how := fmt.Sprintf("exited with code %d", e.Code)
	switch {
	case e.OOM:
		how = "was killed for using more memory than resources.memory allows"
	case e.Signal != "":
		how = "was killed by " + e.Signal
	}
	msg := fmt.Sprintf("instance %s %s and keeps crashing (%d restarts)", in.ID, how, in.Restarts)
	if len(e.LogTail) > 0 {
		tail := e.LogTail[max(0, len(e.LogTail)-5):]
		msg += "; last output:\n  " + strings.Join(tail, "\n  ")
	}
	return msg
}

// leaving orders instances by who should leave first: those not ready,
// then the newest.
func leaving(ins []instance.Instance) []instance.Instance {
	out := slices.Clone(ins)
	slices.SortStableFunc(out, func(a, b instance.Instance) int {
		ar, br := a.State == instance.Ready, b.State == instance.Ready
		if ar != br {
			if ar {
				return 1
			}
			return -1
		}
		return b.StartedAt.Compare(a.StartedAt)
	})
	return out
}
