package controller

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/skiff-sh/skiff/internal/spec"
	"github.com/skiff-sh/skiff/internal/store"
)

// RolloutStatus is where an app's latest rollout stands, as `skiff
// rollout status` shows it.
type RolloutStatus struct {
	App      string `json:"app"`
	Release  int    `json:"release"`
	Stable   int    `json:"stable"`
	Status   string `json:"status"`
	Message  string `json:"message,omitempty"`
	Strategy string `json:"strategy"`
	// Step is the canary step in effect, counted from 1; 0 before the
	// first. Steps lists them all.
	Step  int         `json:"step,omitempty"`
	Steps []spec.Step `json:"steps,omitempty"`
	// Weights are each release's share of requests in percent, when the
	// rollout splits them.
	Weights []Share `json:"weights,omitempty"`
	// Preview is the host that reaches only the new release.
	Preview string `json:"preview,omitempty"`
	// Waiting says what the rollout waits for: "promote" at a manual
	// gate, "ready" for instances, "pause" for a step's pause to end.
	Waiting string `json:"waiting,omitempty"`
	// TimeLeft is what remains of the current step's pause.
	TimeLeft time.Duration `json:"time_left,omitempty"`
	// Analysis is what the new release's analysis saw in this step.
	Analysis *Figures `json:"analysis,omitempty"`
}

// Share is one release's share of requests.
type Share struct {
	Release int     `json:"release"`
	Percent float64 `json:"percent"`
}

// RolloutStatus reports app's latest rollout; an app without releases is
// an error wrapping store.ErrNotFound.
func (c *Controller) RolloutStatus(ctx context.Context, app string) (RolloutStatus, error) {
	a, err := c.cfg.Store.App(ctx, app)
	if err != nil {
		return RolloutStatus{}, err
	}
	if a.Target == 0 {
		return RolloutStatus{}, fmt.Errorf("app %q has no release: %w", app, store.ErrNotFound)
	}
	sets, err := c.cfg.Runtime.Sets(ctx, app)
	if err != nil {
		return RolloutStatus{}, fmt.Errorf("observe app %s: %w", app, err)
	}
	// The latest release may have failed, handing the target back.
	rels, err := c.cfg.Store.Releases(ctx, app)
	if err != nil {
		return RolloutStatus{}, err
	}
	latest := rels[0]
	r, err := c.plan(ctx, a, sets)
	if err != nil {
		return RolloutStatus{}, err
	}
	st := RolloutStatus{App: app, Release: latest.Number, Stable: a.Stable, Status: latest.Status,
		Message: latest.Message, Strategy: r.plan.Strategy}
	if latest.Number != a.Target {
		if sp, err := spec.Parse(latest.SpecFile, latest.Spec); err == nil {
			st.Strategy = sp.Rollout(latest.Strategy).Strategy
		}
		return st, nil
	}
	if r.plan.Strategy == spec.Canary {
		st.Steps = r.plan.Steps
		if !r.rel.StepAt.IsZero() {
			st.Step = r.rel.Step + 1
		}
	}
	for rel, w := range r.routing().weights {
		st.Weights = append(st.Weights, Share{Release: rel, Percent: float64(w) * 100 / fullWeight})
	}
	slices.SortFunc(st.Weights, func(x, y Share) int { return y.Release - x.Release })
	if !r.pending() {
		return st, nil
	}
	if r.plan.Strategy != spec.Rolling {
		st.Preview = r.previewHost()
	}
	t := c.track(app, r.rel.Number)
	t.mu.Lock()
	if t.figures != nil && t.figures.Step == r.rel.Step {
		f := *t.figures
		st.Analysis = &f
	}
	t.mu.Unlock()
	st.Waiting = r.waiting()
	if st.Waiting == "pause" {
		pause, _ := r.plan.Steps[r.rel.Step].PauseFor()
		st.TimeLeft = max(0, pause-time.Since(r.rel.StepAt)).Round(time.Second)
	}
	return st, nil
}

// waiting says what a pending rollout waits for.
func (r *rollout) waiting() string {
	size, ready := r.curSize()
	need := r.want()
	if r.plan.Strategy == spec.Canary {
		need = r.canarySize(min(r.rel.Step, len(r.plan.Steps)))
	}
	switch {
	case size < need || ready < need:
		return "ready"
	case r.plan.Strategy == spec.BlueGreen && r.rel.Step == 0 && !r.plan.AutoPromote && r.rel.Promoted < 0:
		return "promote"
	case r.plan.Strategy == spec.Canary && r.rel.Step < len(r.plan.Steps) && !r.rel.StepAt.IsZero() && r.rel.Promoted < r.rel.Step:
		if _, manual := r.plan.Steps[r.rel.Step].PauseFor(); manual {
			return "promote"
		}
		return "pause"
	}
	return ""
}
