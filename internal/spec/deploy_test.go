package spec

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestDeployErrors(t *testing.T) {
	const head = "name: a\ncommand: x\n"
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"unknown strategy", "deploy: {strategy: yolo}\n", []string{
			`skiff.yaml:3:10: deploy.strategy: "yolo" is not a strategy: use one of rolling, blue-green, canary`}},
		{"field of another strategy", "deploy:\n  strategy: canary\n  max_surge: 2\n", []string{
			`skiff.yaml:5:3: deploy.max_surge: applies to strategy: rolling only, not canary: remove it or set strategy: rolling`}},
		{"nothing may change", "deploy: {max_surge: 0}\n", []string{
			`skiff.yaml:3:10: deploy.max_surge: max_surge and max_unavailable are both 0, so no instance could ever be replaced: allow one of them, e.g. max_surge: 1`}},
		{"steps that shrink and a bad pause", "deploy:\n  strategy: canary\n  steps:\n    - {weight: 50%, pause: 1m}\n    - {weight: 20, pause: soon}\n    - {weight: 100%}\n", []string{
			`skiff.yaml:7:8: deploy.steps[1].weight: must grow from step to step: 20% follows 50%`,
			`skiff.yaml:7:20: deploy.steps[1].pause: invalid pause "soon": expected a duration such as 1m, or manual to wait for skiff promote`,
			`skiff.yaml:8:8: deploy.steps[2].weight: must be more than 0% and less than 100%, got 100% (the release takes all traffic after the last step)`}},
		{"weight missing", "deploy:\n  strategy: canary\n  steps: [{pause: 1m}]\n", []string{
			`skiff.yaml:5:11: deploy.steps[0].weight: required: give the share of traffic for this step, e.g. weight: 10%`}},
		{"analysis on rolling", "deploy:\n  analysis: {max_error_rate: 1%}\n", []string{
			`skiff.yaml:4:3: deploy.analysis: applies to strategy: canary or blue-green, not rolling: remove it or choose one of them`}},
		{"bad analysis", "deploy:\n  strategy: canary\n  analysis: {max_error_rate: 120%, check: healthz, min_requests: 0}\n", []string{
			`skiff.yaml:5:14: deploy.analysis.max_error_rate: must be between 0% and 100%, got 120%`,
			`skiff.yaml:5:36: deploy.analysis.check: "healthz" is not a path: give one starting with / and without spaces, e.g. /healthz/deep`,
			`skiff.yaml:5:52: deploy.analysis.min_requests: must be between 1 and 100000, got 0`}},
		{"bad http", "http: {balance: random, max_body: 0}\n", []string{
			`skiff.yaml:3:8: http.balance: "random" is not a balancing policy: use p2c or round_robin`,
			`skiff.yaml:3:25: http.max_body: must be at least 1 byte, got 0 (leave it out for no limit)`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("skiff.yaml", []byte(head+tt.yaml))
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse error is %v, want *Errors", err)
			}
			got := make([]string, len(errs.List))
			for i, e := range errs.List {
				got[i] = e.Error()
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(tt.want, "\n     "))
			}
		})
	}
}

func TestRolloutDefaults(t *testing.T) {
	s, err := Parse("skiff.yaml", []byte("name: a\ncommand: x\ndeploy:\n  strategy: canary\n  steps: [{weight: 5%, pause: manual}, {weight: 30, pause: 10s}]\n  analysis: {max_p95: 300ms}\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := s.Rollout("")
	want := Rollout{Strategy: Canary, MaxSurge: 1, AutoPromote: true, Keep: DefaultKeep,
		Steps:        []Step{{Weight: 5, Pause: "manual"}, {Weight: 30, Pause: "10s"}},
		MaxErrorRate: 1, MaxP95: 300 * time.Millisecond, MinRequests: 20}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("Rollout() = %+v\nwant %+v", r, want)
	}
	if _, manual := r.Steps[0].PauseFor(); !manual {
		t.Error("pause: manual does not wait for promote")
	}
	if d, manual := r.Steps[1].PauseFor(); manual || d != 10*time.Second {
		t.Errorf("PauseFor() = %s, %v; want 10s", d, manual)
	}
	// --strategy rolling ignores the canary's steps but keeps the
	// analysis, which a later canary deploy would use.
	if o := s.Rollout(Rolling); o.Strategy != Rolling || !reflect.DeepEqual(o.Steps, DefaultSteps) {
		t.Errorf("Rollout(rolling) = %+v", o)
	}
	plain, _ := Parse("skiff.yaml", []byte("name: a\ncommand: x\n"))
	if r := plain.Rollout(""); r.Strategy != Rolling || r.MaxSurge != 1 || r.MaxUnavailable != 0 {
		t.Errorf("default rollout = %+v", r)
	}
}
