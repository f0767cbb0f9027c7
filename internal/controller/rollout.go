package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/spec"
	"github.com/skiff-sh/skiff/internal/store"
)

// crashLimit is how many restarts of a new release's instance fail its
// deploy.
const crashLimit = 2

// rollout is one sync's view of an app: desired state and what runs. It
// decides both halves of a deploy, whatever the runtime: how large each
// release's instance set is (step) and what share of requests each
// release takes (traffic). The strategies differ only in those two
// decisions: rolling (this file), blue-green (bluegreen.go) and canary
// (canary.go).
type rollout struct {
	c    *Controller
	app  store.App
	sets []instance.Set

	// rel is the target release, nil when the app has none; spec and
	// plan are its spec and deploy plan.
	rel  *store.Release
	spec *spec.Spec
	plan spec.Rollout

	// cur is the target release's set, nil until it has one; old are the
	// others.
	cur *instance.Set
	old []instance.Set

	// tmpl and readyTimeout are loaded by sync before step.
	tmpl         instance.Template
	readyTimeout time.Duration
}

// newRollout classifies sets by whether they run the target release.
func newRollout(c *Controller, a store.App, sets []instance.Set, rel *store.Release, sp *spec.Spec) *rollout {
	r := &rollout{c: c, app: a, sets: sets, rel: rel, spec: sp}
	switch {
	case sp != nil:
		r.plan = sp.Rollout(rel.Strategy)
	default:
		r.plan = (&spec.Spec{}).Rollout("")
	}
	for i := range sets {
		if rel != nil && sets[i].Release == rel.Number {
			r.cur = &sets[i]
		} else {
			r.old = append(r.old, sets[i])
		}
	}
	return r
}

func (r *rollout) pending() bool {
	return r.rel != nil && r.rel.Status == store.StatusPending
}

// want is how many instances the target release should end with.
func (r *rollout) want() int {
	if r.rel == nil {
		return 0
	}
	return r.app.Replicas
}

func (r *rollout) curSize() (size, ready int) {
	if r.cur == nil {
		return 0, 0
	}
	return r.cur.Size, r.cur.Ready()
}

func (r *rollout) oldCounts() (live, ready int) {
	for _, set := range r.old {
		live += len(set.Instances)
		ready += set.Ready()
	}
	return live, ready
}

// step takes one step towards the app's desired state.
func (r *rollout) step(ctx context.Context) error {
	if !r.pending() {
		return r.settle(ctx)
	}
	_, curReady := r.curSize()
	if reason := r.failure(curReady); reason != "" {
		return r.fail(ctx, reason, nil)
	}
	// A strategy protects what runs: a first deploy has nothing to
	// protect, unless the rollout had begun (its old instances may be
	// gone by now).
	oldLive, _ := r.oldCounts()
	begun := oldLive > 0 || !r.rel.StepAt.IsZero()
	switch {
	case r.plan.Strategy == spec.BlueGreen && begun:
		return r.blueGreen(ctx)
	case r.plan.Strategy == spec.Canary && begun && r.want() > 0:
		return r.canary(ctx)
	}
	// Rolling, and any first deploy: with nothing running there is
	// nothing to protect.
	return r.rolling(ctx)
}

// rolling replaces old instances with new ones: at most max_surge
// instances beyond want run, and at most max_unavailable fewer than want
// are ready.
func (r *rollout) rolling(ctx context.Context) error {
	want := r.want()
	curSize, curReady := r.curSize()
	oldLive, oldReady := r.oldCounts()
	if grown, err := r.grow(ctx, min(want, want+r.plan.MaxSurge-oldLive)); grown || err != nil {
		return err
	}
	if done, err := r.shrinkCur(ctx); done || err != nil {
		return err
	}
	// Retire old instances while enough others are ready; one not ready
	// carries no traffic and goes at once.
	floor := want - r.plan.MaxUnavailable
	for _, set := range r.old {
		for _, in := range leaving(set.Instances) {
			if in.State != instance.Ready || curReady+oldReady-1 >= floor {
				return r.retire(ctx, in)
			}
		}
	}
	if err := r.forgetEmpty(ctx); err != nil {
		return err
	}
	if oldLive == 0 && curSize == want && curReady == want {
		return r.complete(ctx, fmt.Sprintf("release %d serves with %d ready instance(s)", r.rel.Number, want))
	}
	r.comeBack()
	return nil
}

// settle keeps an app whose target release is done (or that has none)
// as it should be: its set at size, the other releases' instances, which
// take no traffic, retired.
func (r *rollout) settle(ctx context.Context) error {
	if grown, err := r.grow(ctx, r.want()); grown || err != nil {
		return err
	}
	if done, err := r.shrinkCur(ctx); done || err != nil {
		return err
	}
	_, curReady := r.curSize()
	keep := r.keepOld()
	if keep > 0 {
		r.c.queue.AddAfter(r.app.Name, keep)
	}
	for _, set := range r.old {
		if keep > 0 && set.Release < r.rel.Number {
			continue // blue-green: kept for a quick rollback
		}
		for _, in := range leaving(set.Instances) {
			// Old instances take no traffic once the target is done,
			// unless the target has no ready instance at all.
			if in.State != instance.Ready || curReady > 0 || r.rel == nil {
				return r.retire(ctx, in)
			}
		}
	}
	return r.forgetEmpty(ctx)
}

// grow makes the target set hold size instances if it holds fewer, and
// reports whether it did.
func (r *rollout) grow(ctx context.Context, size int) (bool, error) {
	curSize, _ := r.curSize()
	if r.rel == nil || size <= curSize {
		return false, nil
	}
	if err := r.c.cfg.Runtime.Scale(ctx, r.tmpl, size); err != nil {
		if errors.Is(err, instance.ErrCannotRun) && r.pending() {
			return true, r.fail(ctx, err.Error(), nil)
		}
		return true, fmt.Errorf("scale release %d of %s to %d: %w", r.rel.Number, r.app.Name, size, err)
	}
	return true, nil // the runtime's watch brings us back
}

// shrinkCur retires one instance of the target set when it is larger
// than wanted (scaled down), and reports whether it acted.
func (r *rollout) shrinkCur(ctx context.Context) (bool, error) {
	want := r.want()
	if r.cur == nil || r.cur.Size <= want {
		return false, nil
	}
	if len(r.cur.Instances) == 0 {
		// The set's size runs ahead of its instances (none started yet):
		// shrinking it stops nothing that serves.
		return true, r.c.cfg.Runtime.Scale(ctx, r.tmpl, want)
	}
	return true, r.retire(ctx, leaving(r.cur.Instances)[0])
}

// retireOld retires one instance of an old release, if any runs, and
// reports whether it did.
func (r *rollout) retireOld(ctx context.Context) (bool, error) {
	for _, set := range r.old {
		if len(set.Instances) > 0 {
			return true, r.retire(ctx, leaving(set.Instances)[0])
		}
	}
	return false, nil
}

// retireSuperseded retires one instance of an old release other than the
// stable one (a canary or blue-green release the target superseded),
// and reports whether it did. Split routes give such releases no share
// while the stable release has a ready instance, so only then.
func (r *rollout) retireSuperseded(ctx context.Context) (bool, error) {
	stableReady := false
	for _, set := range r.old {
		stableReady = stableReady || set.Release == r.app.Stable && set.Ready() > 0
	}
	if !stableReady {
		return false, nil
	}
	for _, set := range r.old {
		if set.Release != r.app.Stable && len(set.Instances) > 0 {
			return true, r.retire(ctx, leaving(set.Instances)[0])
		}
	}
	return false, nil
}

// forgetEmpty deletes the old sets that have no instance left.
func (r *rollout) forgetEmpty(ctx context.Context) error {
	for _, set := range r.old {
		if len(set.Instances) == 0 {
			if err := r.c.cfg.Runtime.DeleteSet(ctx, r.app.Name, set.Release); err != nil {
				return fmt.Errorf("forget release %d of %s: %w", set.Release, r.app.Name, err)
			}
		}
	}
	return nil
}

// complete ends the target release's deploy as a success.
func (r *rollout) complete(ctx context.Context, msg string) error {
	if r.rel.RollbackOf != 0 {
		msg += fmt.Sprintf(" (rollback to release %d)", r.rel.RollbackOf)
	}
	r.c.forget(r.app.Name, r.rel.Number)
	return r.c.cfg.Store.FinishRelease(ctx, r.app.Name, r.rel.Number, store.StatusComplete, msg)
}

// fail ends the target release's deploy as a failure; the stable release
// takes all traffic back and the failed set is retired.
func (r *rollout) fail(ctx context.Context, reason string, data map[string]any) error {
	r.c.log.Warn("deploy failed", "app", r.app.Name, "release", r.rel.Number, "reason", reason)
	r.c.forget(r.app.Name, r.rel.Number)
	if err := r.c.cfg.Store.FinishReleaseWith(ctx, r.app.Name, r.rel.Number, store.StatusFailed, reason, data); err != nil {
		return err
	}
	r.c.queue.Add(r.app.Name) // retire the failed set at once
	return nil
}

// comeBack asks for another sync when the ready deadline would pass,
// even if nothing changes before.
func (r *rollout) comeBack() {
	r.c.queue.AddAfter(r.app.Name, r.readyTimeout/4+time.Second)
}

// retire removes one instance and comes back for the next step.
func (r *rollout) retire(ctx context.Context, in instance.Instance) error {
	if err := r.c.retire(ctx, r.app.Name, in); err != nil {
		return err
	}
	r.c.queue.Add(r.app.Name)
	return nil
}

// failure says why the target release's deploy has failed, or "".
func (r *rollout) failure(ready int) string {
	since := r.c.moved(r.app.Name, r.rel.Number, ready)
	if r.cur == nil {
		return ""
	}
	for _, in := range r.cur.Instances {
		if in.State == instance.CrashLoop && in.Restarts >= crashLimit && in.LastExit != nil {
			return crashReport(in)
		}
	}
	// The instances a step needs ready: all of them, except a canary's.
	need := min(r.app.Replicas, r.cur.Size)
	if ready < need && time.Since(since) > r.readyTimeout {
		var why []string
		for _, in := range r.cur.Instances {
			if in.State != instance.Ready && in.Message != "" {
				why = append(why, fmt.Sprintf("%s: %s", in.ID, in.Message))
			}
		}
		msg := fmt.Sprintf("%d of %d instance(s) ready after waiting %s (health.ready_timeout)", ready, need, r.readyTimeout)
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
