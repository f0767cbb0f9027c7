package store

import (
	"context"
	"errors"
	"testing"
)

func TestRolloutSteps(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	first := release(t, s, "web")
	if err := s.FinishRelease(ctx, "web", first.Number, StatusComplete, "ok"); err != nil {
		t.Fatal(err)
	}
	before := dump(t, s)
	if _, err := s.Promote(ctx, "web", false); !errors.Is(err, ErrConflict) {
		t.Fatalf("Promote with no rollout in progress = %v, want ErrConflict", err)
	}
	if _, err := s.Abort(ctx, "web", "aborted"); !errors.Is(err, ErrConflict) {
		t.Fatalf("Abort with no rollout in progress = %v, want ErrConflict", err)
	}
	if after := dump(t, s); after != before {
		t.Fatalf("a refused promote or abort changed the store:\n%s", after)
	}

	rel, err := s.CreateRelease(ctx, NewRelease{App: "web", SpecFile: "skiff.yaml", Spec: []byte("name: web\n"),
		Artifact: digestOf("web"), Strategy: "canary"})
	if err != nil {
		t.Fatal(err)
	}
	if rel.Strategy != "canary" || rel.Promoted != -1 || rel.Step != 0 || !rel.StepAt.IsZero() {
		t.Fatalf("new release = %+v", rel)
	}
	if err := s.SetStep(ctx, "web", rel.Number, 1, "release 2 takes 50% of requests", map[string]any{"weight": 50}); err != nil {
		t.Fatal(err)
	}
	got, _ := s.Release(ctx, "web", rel.Number)
	if got.Step != 1 || got.StepAt.IsZero() || got.Strategy != "canary" {
		t.Fatalf("after SetStep: %+v", got)
	}
	p, err := s.Promote(ctx, "web", false)
	if err != nil || p.Promoted != 1 {
		t.Fatalf("Promote = %+v, %v; want promoted past step 1", p, err)
	}
	if p, _ := s.Promote(ctx, "web", true); p.Promoted != PromoteAll {
		t.Fatalf("Promote all = %+v", p)
	}
	ab, err := s.Abort(ctx, "web", "aborted by skiff abort")
	if err != nil || ab.Status != StatusFailed || ab.Message != "aborted by skiff abort" {
		t.Fatalf("Abort = %+v, %v", ab, err)
	}
	a, _ := s.App(ctx, "web")
	if a.Target != first.Number {
		t.Errorf("after abort the target is %d, want the stable release %d", a.Target, first.Number)
	}
	// A finished release keeps its step.
	if err := s.SetStep(ctx, "web", rel.Number, 2, "late", nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Release(ctx, "web", rel.Number); got.Step != 1 {
		t.Errorf("SetStep moved a finished release to step %d", got.Step)
	}
	evs, _ := s.Events(ctx, EventQuery{App: "web"})
	kinds := map[string]int{}
	for _, e := range evs {
		kinds[e.Kind]++
	}
	if kinds["release.step"] != 1 || kinds["release.promoted"] != 2 || kinds["release.failed"] != 1 {
		t.Errorf("events by kind = %v", kinds)
	}
}
