package controller

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/skiff-sh/skiff/internal/store"
)

// canary sends a growing share of requests to the new release, step by
// step, judging it at each step against its thresholds and the stable
// release (analyse). Its set grows with its share (at least one
// instance); the stable release keeps its full size until the canary
// takes all traffic, so an abort needs nothing to start. Each step's
// share takes effect once the instances it needs are ready, and its
// pause counts from then.
func (r *rollout) canary(ctx context.Context) error {
	final := len(r.plan.Steps)
	s := min(r.rel.Step, final)
	if retired, err := r.retireSuperseded(ctx); retired || err != nil {
		return err
	}
	if grown, err := r.grow(ctx, r.canarySize(s)); grown || err != nil {
		return err
	}
	_, curReady := r.curSize()
	if curReady < r.canarySize(s) {
		r.comeBack()
		return nil
	}
	if r.rel.StepAt.IsZero() {
		return r.setStep(ctx, s)
	}
	if s == final {
		// Every request goes to the new release: the old instances leave.
		if retired, err := r.retireOld(ctx); retired || err != nil {
			return err
		}
		if err := r.forgetEmpty(ctx); err != nil {
			return err
		}
		return r.complete(ctx, fmt.Sprintf("release %d serves all traffic with %d ready instance(s) after %d canary step(s)", r.rel.Number, r.want(), final))
	}
	if stop, err := r.checks(ctx); stop || err != nil {
		return err
	}
	if reason, data := r.analyse(); reason != "" {
		return r.fail(ctx, reason, data)
	}
	pause, manual := r.plan.Steps[s].PauseFor()
	if r.rel.Promoted < s {
		if manual {
			r.announce(ctx, s, fmt.Sprintf("release %d holds %s of requests; run `skiff promote %s` to go on, or `skiff abort %s`", r.rel.Number, r.plan.Steps[s].Weight, r.app.Name, r.app.Name))
			r.c.queue.AddAfter(r.app.Name, analysisInterval)
			return nil
		}
		if left := pause - time.Since(r.rel.StepAt); left > 0 {
			r.c.queue.AddAfter(r.app.Name, min(analysisInterval, left))
			return nil
		}
	}
	next := s + 1
	if r.rel.Promoted >= store.PromoteAll {
		next = final
	}
	if grown, err := r.grow(ctx, r.canarySize(next)); grown || err != nil {
		return err
	}
	if curReady < r.canarySize(next) {
		r.comeBack()
		return nil
	}
	return r.setStep(ctx, next)
}

// canarySize is how many instances the new release needs at step s: its
// share of the replicas, rounded up, at least one; all of them after the
// last step.
func (r *rollout) canarySize(s int) int {
	want := r.want()
	if s >= len(r.plan.Steps) {
		return want
	}
	n := int(math.Ceil(float64(r.plan.Steps[s].Weight) * float64(want) / 100))
	return min(max(n, 1), want)
}

// setStep moves the rollout to step s; its share takes effect with the
// next route snapshot.
func (r *rollout) setStep(ctx context.Context, s int) error {
	final := len(r.plan.Steps)
	msg := fmt.Sprintf("release %d takes all traffic", r.rel.Number)
	data := map[string]any{"step": s, "weight": "100%"}
	if s < final {
		w := r.plan.Steps[s].Weight
		msg = fmt.Sprintf("release %d takes %s of requests (step %d of %d)", r.rel.Number, w, s+1, final)
		data["weight"] = w.String()
	}
	if err := r.c.cfg.Store.SetStep(ctx, r.app.Name, r.rel.Number, s, msg, data); err != nil {
		return err
	}
	r.c.queue.Add(r.app.Name)
	return nil
}

// announce appends a "release.paused" event once per step.
func (r *rollout) announce(ctx context.Context, step int, msg string) {
	if !r.c.track(r.app.Name, r.rel.Number).announce(step) {
		return
	}
	if _, err := r.c.cfg.Store.AddEvent(ctx, store.Event{App: r.app.Name, Release: r.rel.Number, Kind: "release.paused", Message: msg}); err != nil {
		r.c.log.Warn("record pause", "app", r.app.Name, "err", err)
	}
}
