package controller

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/store"
)

// route returns the last snapshot's route for host.
func (h *harness) route(host string) edge.Route {
	h.t.Helper()
	s := h.edge.last()
	if s != nil {
		for _, r := range s.Routes {
			if r.Host == host {
				return r
			}
		}
	}
	h.t.Fatalf("no route for %s", host)
	return edge.Route{}
}

// settle syncs app until its release n is no longer pending or limit
// syncs ran, making new instances ready after each sync.
func (h *harness) settleRelease(app string, n, limit int) {
	h.t.Helper()
	for range limit {
		if h.rel(app, n).Status != store.StatusPending {
			return
		}
		h.sync(app)
		h.rt.readyAll(app)
	}
}

func weights(r edge.Route) map[int]int {
	if r.Releases == nil {
		return nil
	}
	w := map[int]int{}
	for _, rw := range r.Releases {
		w[rw.Release] = rw.Weight
	}
	return w
}

func backendReleases(r edge.Route) []int {
	var out []int
	for _, b := range r.Backends {
		if !slices.Contains(out, b.Release) {
			out = append(out, b.Release)
		}
	}
	slices.Sort(out)
	return out
}

func (h *harness) events(app, kind string) []store.Event {
	h.t.Helper()
	evs, err := h.store.Events(h.ctx, store.EventQuery{App: app})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []store.Event
	for _, e := range evs {
		if e.Kind == kind {
			out = append(out, e)
		}
	}
	return out
}

const canarySpec = `deploy:
  strategy: canary
  steps: [{weight: 25%, pause: 0s}, {weight: 50%, pause: manual}]
  analysis: {max_error_rate: 5%, min_requests: 10}
`

// TestCanarySteps drives a canary through its steps: its set grows with
// its share, each share reaches the edge only once the instances for it
// are ready, a manual pause holds until promoted, and the stable release
// keeps its full size until the canary takes everything.
func TestCanarySteps(t *testing.T) {
	h := newHarness(t)
	h.release("hello", 4, "")
	h.deployReady("hello", 1)
	n := h.release("hello", 4, canarySpec)

	h.sync("hello")
	if got := len(h.rt.instances("hello", n)); got != 1 {
		t.Fatalf("step 1 (25%% of 4) started %d canary instances, want 1", got)
	}
	if w := weights(h.route(host)); w[n] != 0 {
		t.Fatalf("the canary has weight %d before it is ready", w[n])
	}
	h.rt.readyAll("hello")
	h.sync("hello") // step 1 recorded
	h.sync("hello") // and routed
	r := h.route(host)
	if w := weights(r); w[1] != 7500 || w[n] != 2500 || !r.Sticky {
		t.Fatalf("step 1 routes %v (sticky %v), want release 1 at 7500 and %d at 2500, sticky", w, r.Sticky, n)
	}
	if got := backendReleases(h.route("2." + host)); !slices.Equal(got, []int{n}) {
		t.Errorf("preview host routes releases %v, want only %d", got, n)
	}
	// The pause of 0s is over at once: step 2 needs 2 instances.
	for range 4 {
		h.sync("hello")
		h.rt.readyAll("hello")
	}
	if w := weights(h.route(host)); w[1] != 5000 || w[n] != 5000 {
		t.Fatalf("step 2 routes %v, want 5000 each", w)
	}
	if got := len(h.rt.instances("hello", n)); got != 2 {
		t.Errorf("step 2 runs %d canary instances, want 2", got)
	}
	if got := len(h.rt.instances("hello", 1)); got != 4 {
		t.Errorf("the stable release runs %d instances during the canary, want all 4", got)
	}
	// A manual pause holds.
	for range 5 {
		h.sync("hello")
	}
	if rel := h.rel("hello", n); rel.Status != store.StatusPending || rel.Step != 1 {
		t.Fatalf("release at a manual pause is %s at step %d", rel.Status, rel.Step)
	}
	if evs := h.events("hello", "release.paused"); len(evs) != 1 || !strings.Contains(evs[0].Message, "skiff promote hello") {
		t.Errorf("paused events = %+v, want one saying how to promote", evs)
	}
	if _, err := h.store.Promote(h.ctx, "hello", false); err != nil {
		t.Fatal(err)
	}
	h.settleRelease("hello", n, 40)
	if rel := h.rel("hello", n); rel.Status != store.StatusComplete {
		t.Fatalf("release after promote is %s: %s", rel.Status, rel.Message)
	}
	if got := len(h.rt.instances("hello", n)); got != 4 {
		t.Errorf("complete canary runs %d instances, want 4", got)
	}
	if got := len(h.rt.instances("hello", 1)); got != 0 {
		t.Errorf("%d old instances still run", got)
	}
	if w := weights(h.route(host)); w != nil {
		t.Errorf("after the rollout the route is still split: %v", w)
	}
	steps := h.events("hello", "release.step")
	if len(steps) != 3 || steps[2].Message != "release 2 takes all traffic" {
		t.Errorf("step events = %+v", steps)
	}
}

// TestCanaryAnalysisAborts checks that a canary failing its error-rate
// threshold is rolled back by itself: release failed with the figures,
// traffic back on the stable release at once, canary retired.
func TestCanaryAnalysisAborts(t *testing.T) {
	h := newHarness(t)
	h.release("hello", 2, "")
	h.deployReady("hello", 1)
	n := h.release("hello", 2, "deploy:\n  strategy: canary\n  steps: [{weight: 10%, pause: 1h}]\n  analysis: {max_error_rate: 1%, min_requests: 20}\n")
	for range 3 {
		h.sync("hello")
		h.rt.readyAll("hello")
	}
	h.sync("hello") // the step's analysis window begins
	if w := weights(h.route(host)); w[n] != 1000 {
		t.Fatalf("canary routes %v, want weight 1000 for release %d", w, n)
	}
	canary := h.rt.instances("hello", n)[0].ID
	stable := h.rt.instances("hello", 1)[0].ID
	// Too few requests to judge: 5 of 10 failed.
	h.edge.addStats(canary, 10, 5, 10*time.Millisecond)
	h.sync("hello")
	if rel := h.rel("hello", n); rel.Status != store.StatusPending {
		t.Fatalf("judged on 10 requests, below min_requests: %s %s", rel.Status, rel.Message)
	}
	h.edge.addStats(canary, 20, 1, 10*time.Millisecond)
	h.edge.addStats(stable, 270, 0, 10*time.Millisecond)
	h.sync("hello")
	rel := h.rel("hello", n)
	if rel.Status != store.StatusFailed || !strings.Contains(rel.Message, "error rate 20.00% (6 of 30 requests) is over max_error_rate 1%") {
		t.Fatalf("release = %s %q, want failed on its error rate", rel.Status, rel.Message)
	}
	evs := h.events("hello", "release.failed")
	if len(evs) != 1 || evs[0].Data["error_rate"] != 20.0 || evs[0].Data["requests"] != 30.0 {
		t.Errorf("failed event = %+v, want the figures", evs)
	}
	h.sync("hello")
	if w := weights(h.route(host)); w[1] != fullWeight || w[n] != 0 {
		t.Errorf("after the abort the route is %v, want everything on release 1", w)
	}
	for range 5 {
		h.sync("hello")
	}
	if got := h.rt.instances("hello", n); len(got) != 0 {
		t.Errorf("canary instances still run: %v", ids(got))
	}
	h.checkRetired(canary)
	if a := h.app("hello"); a.Target != 1 || a.Stable != 1 {
		t.Errorf("app = %+v, want release 1 target and stable", a)
	}
}

// TestBlueGreen checks the switch: the new set comes up at full size
// beside the old one without traffic except on its preview host, waits
// for promote when auto_promote is off, then takes everything at once;
// the old set keeps running without traffic for the keep window.
func TestBlueGreen(t *testing.T) {
	h := newHarness(t)
	h.release("hello", 2, "")
	h.deployReady("hello", 1)
	n := h.release("hello", 2, "deploy: {strategy: blue-green, auto_promote: false, keep: 1h}\n")
	h.sync("hello")
	if got := len(h.rt.instances("hello", n)); got != 2 {
		t.Fatalf("blue-green started %d new instances, want 2 at once", got)
	}
	h.rt.readyAll("hello")
	for range 3 {
		h.sync("hello")
	}
	if w := weights(h.route(host)); w[1] != fullWeight || w[n] != 0 {
		t.Fatalf("before the switch the route is %v", w)
	}
	if got := backendReleases(h.route("2." + host)); !slices.Equal(got, []int{n}) {
		t.Errorf("preview host routes releases %v, want %d", got, n)
	}
	if rel := h.rel("hello", n); rel.Status != store.StatusPending {
		t.Fatalf("switched without promote: %s", rel.Status)
	}
	if len(h.events("hello", "release.paused")) != 1 {
		t.Error("no event says the release waits for promote")
	}
	if _, err := h.store.Promote(h.ctx, "hello", false); err != nil {
		t.Fatal(err)
	}
	h.sync("hello") // step 1: the switch
	h.sync("hello") // routed, then complete
	if rel := h.rel("hello", n); rel.Status != store.StatusComplete {
		t.Fatalf("release after promote = %s %q", rel.Status, rel.Message)
	}
	for range 3 {
		h.sync("hello")
	}
	if w := weights(h.route(host)); w[n] != fullWeight || w[1] != 0 {
		t.Errorf("after the switch the route is %v", w)
	}
	old := h.rt.instances("hello", 1)
	if len(old) != 2 || old[0].State != instance.Ready {
		t.Errorf("the old set within its keep window: %+v, want 2 ready instances", old)
	}
}

// TestRollingSurge checks max_surge and max_unavailable: never more than
// replicas+surge instances, never fewer than replicas-unavailable ready
// ones routed.
func TestRollingSurge(t *testing.T) {
	h := newHarness(t)
	h.release("hello", 4, "")
	h.deployReady("hello", 1)
	from := len(h.edge.applied())
	n := h.release("hello", 4, "deploy: {max_surge: 2, max_unavailable: 1}\n")
	for step := 0; h.rel("hello", n).Status == store.StatusPending; step++ {
		if step > 60 {
			t.Fatal("still pending after 60 syncs")
		}
		h.sync("hello")
		if live := len(h.rt.instances("hello", 0)); live > 6 {
			t.Fatalf("%d instances run, want at most 4+2", live)
		}
		if step%2 == 1 {
			h.rt.readyAll("hello")
		}
	}
	surged := false
	for _, e := range h.log.all() {
		if e.kind == "scale" && e.id == setKey("hello", n) && e.n == 2 {
			surged = true
		}
	}
	if !surged {
		t.Error("the new set never grew by 2 at once")
	}
	for _, s := range h.edge.applied()[from:] {
		if got := backends(s, host); len(got) < 3 {
			t.Errorf("generation %d routes %v: fewer than 4-1 ready instances", s.Generation, got)
		}
	}
}

// TestBlueGreenCheck checks that analysis.check gates the switch: it
// holds while the check fails, fails the release at the limit, and lets
// a release whose instances pass it take the traffic.
func TestBlueGreenCheck(t *testing.T) {
	h := newHarness(t)
	h.release("hello", 2, "")
	h.deployReady("hello", 1)
	n := h.release("hello", 2, "deploy: {strategy: blue-green, analysis: {check: /deep}}\n")
	h.sync("hello")
	h.rt.readyAll("hello")
	// Nothing listens at the fake instances' endpoints: every check fails.
	for i := range checkFailLimit {
		h.sync("hello")
		rel := h.rel("hello", n)
		if i < checkFailLimit-1 && (rel.Status != store.StatusPending || rel.Step != 0) {
			t.Fatalf("after %d failed check(s) the release is %s at step %d", i+1, rel.Status, rel.Step)
		}
	}
	if rel := h.rel("hello", n); rel.Status != store.StatusFailed || !strings.Contains(rel.Message, "analysis check GET /deep failed 3 times in a row") {
		t.Fatalf("release = %s %q, want failed by its check", rel.Status, rel.Message)
	}

	// A release whose instances answer the check switches.
	deep := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/deep" {
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer deep.Close()
	m := h.release("hello", 2, "deploy: {strategy: blue-green, analysis: {check: /deep}}\n# v3\n")
	for range 5 { // the failed release's instances leave first
		h.sync("hello")
	}
	if got := len(h.rt.instances("hello", m)); got != 2 {
		t.Fatalf("release %d runs %d instances, want 2", m, got)
	}
	for _, in := range h.rt.instances("hello", m) {
		h.rt.update("hello", in.ID, func(in *instance.Instance) {
			in.Endpoint = deep.Listener.Addr().String()
			in.State = instance.Ready
		})
	}
	h.settleRelease("hello", m, 10)
	if rel := h.rel("hello", m); rel.Status != store.StatusComplete {
		t.Fatalf("release with a passing check = %s %q", rel.Status, rel.Message)
	}
}

// TestHTTPSettingsReachTheEdge checks that the spec's http block shapes
// the app's routes.
func TestHTTPSettingsReachTheEdge(t *testing.T) {
	h := newHarness(t)
	h.release("hello", 2, "http: {balance: round_robin, max_body: 1Mi, h2c: true}\n")
	h.deployReady("hello", 1)
	r := h.route(host)
	if r.Balance != edge.BalanceRoundRobin || r.MaxBody != 1<<20 || len(r.Backends) != 2 || !r.Backends[0].H2C {
		t.Errorf("route = %+v, want round robin, 1 MiB bodies, h2c backends", r)
	}
}

// TestSupersededCanaryGetsNoTraffic checks that a canary superseded by a
// newer canary stops taking requests: the stable release keeps the rest.
func TestSupersededCanaryGetsNoTraffic(t *testing.T) {
	h := newHarness(t)
	h.release("hello", 2, "")
	h.deployReady("hello", 1)
	const steps = "deploy: {strategy: canary, steps: [{weight: 20%, pause: 1h}]}\n"
	n2 := h.release("hello", 2, steps)
	for range 4 {
		h.sync("hello")
		h.rt.readyAll("hello")
	}
	if w := weights(h.route(host)); w[n2] != 2000 {
		t.Fatalf("canary 2 routes %v", w)
	}
	n3 := h.release("hello", 2, steps+"# v3\n")
	for range 4 {
		h.sync("hello")
		h.rt.readyAll("hello")
	}
	if w := weights(h.route(host)); w[n3] != 2000 || w[1] != 8000 || w[n2] != 0 {
		t.Errorf("with canary 3 superseding 2 the route is %v, want 3 at 2000, 1 at 8000, 2 at 0", w)
	}
	if got := h.rt.instances("hello", n2); len(got) != 0 {
		t.Errorf("the superseded canary still runs %v", ids(got))
	}
}

// TestRuntimeCannotRunFailsRelease checks that a template the runtime
// refuses for good fails its release at once with the runtime's reason,
// instead of being retried until the ready timeout.
func TestRuntimeCannotRunFailsRelease(t *testing.T) {
	h := newHarness(t)
	n := h.release("hello", 1, "")
	h.rt.failScale = fmt.Errorf("app hello has a command but no image: %w", instance.ErrCannotRun)
	h.sync("hello")
	rel := h.rel("hello", n)
	if rel.Status != store.StatusFailed || !strings.HasPrefix(rel.Message, "app hello has a command but no image") {
		t.Fatalf("release = %s %q, want failed with the runtime's reason", rel.Status, rel.Message)
	}
}
