package controller

import (
	"context"
	"fmt"
	"time"

	"github.com/skiff-sh/skiff/internal/spec"
	"github.com/skiff-sh/skiff/internal/store"
)

// blueGreen brings the new release up beside the old one at full size,
// reachable only on its preview host (and by the X-Skiff-Release header),
// then switches every request to it at once: when it is ready and its
// check passes, or when the user promotes it. The old release's
// instances keep running, without traffic, for the plan's keep window
// (settle retires them after it), so a rollback needs no new instance.
func (r *rollout) blueGreen(ctx context.Context) error {
	want := r.want()
	if r.rel.Step == 0 {
		// Before the switch; after it the old sets are kept on purpose.
		if retired, err := r.retireSuperseded(ctx); retired || err != nil {
			return err
		}
	}
	if grown, err := r.grow(ctx, want); grown || err != nil {
		return err
	}
	if done, err := r.shrinkCur(ctx); done || err != nil {
		return err
	}
	curSize, curReady := r.curSize()
	if r.rel.Step >= 1 {
		// The switch is published (routing reads Step): done.
		msg := fmt.Sprintf("release %d serves all traffic with %d ready instance(s)", r.rel.Number, want)
		if r.plan.Keep > 0 {
			msg += fmt.Sprintf("; the old release keeps running without traffic for %s for a quick rollback", r.plan.Keep)
		}
		return r.complete(ctx, msg)
	}
	if curSize < want || curReady < want {
		r.comeBack()
		return nil
	}
	if failed, err := r.checks(ctx); failed || err != nil {
		return err
	}
	if !r.plan.AutoPromote && r.rel.Promoted < 0 {
		r.announce(ctx, 0, fmt.Sprintf("release %d is ready on %s; run `skiff promote %s` to switch traffic to it", r.rel.Number, r.previewHost(), r.app.Name))
		return nil
	}
	if err := r.c.cfg.Store.SetStep(ctx, r.app.Name, r.rel.Number, 1,
		fmt.Sprintf("release %d takes all traffic (blue-green switch)", r.rel.Number), nil); err != nil {
		return err
	}
	r.c.queue.Add(r.app.Name) // publish the switch, then finish
	return nil
}

// keepOld says how much longer a finished blue-green deploy keeps the old
// release's instances, 0 when they may go.
func (r *rollout) keepOld() time.Duration {
	if r.rel == nil || r.rel.Status == store.StatusFailed || r.plan.Strategy != spec.BlueGreen || r.rel.FinishedAt.IsZero() {
		return 0
	}
	return max(0, time.Until(r.rel.FinishedAt.Add(r.plan.Keep)))
}
