package controller

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/store"
)

const host = "hello.apps.test"

func TestFirstDeploy(t *testing.T) {
	h := newHarness(t)
	n := h.release("hello", 3, "")
	h.sync("hello")
	if got := h.rt.instances("hello", n); len(got) != 3 {
		t.Fatalf("first deploy started %d instances, want all 3 at once", len(got))
	}
	h.sync("hello")
	if s := h.rel("hello", n).Status; s != store.StatusPending {
		t.Fatalf("release is %s while no instance is ready", s)
	}
	h.rt.readyAll("hello")
	h.sync("hello")
	rel := h.rel("hello", n)
	if rel.Status != store.StatusComplete || !strings.Contains(rel.Message, "3 ready") {
		t.Fatalf("release = %s %q, want complete with 3 ready", rel.Status, rel.Message)
	}
	if a := h.app("hello"); a.Stable != n {
		t.Errorf("stable = %d, want %d", a.Stable, n)
	}
	if got := backends(h.edge.last(), host); len(got) != 3 {
		t.Errorf("routed %v, want 3 instances", got)
	}
	// The template carries the release's command, the defaults and the
	// unpacked artifact.
	tmpl := h.rt.templates[setKey("hello", n)]
	if !slices.Equal(tmpl.Command, []string{"/bin/sh", "-c", "./run.sh"}) || tmpl.Health.ReadyTimeout != time.Minute || tmpl.Dir != filepath.Join(h.releasesDir, "hello", "1") {
		t.Errorf("template = %+v", tmpl)
	}
	if _, err := os.ReadFile(filepath.Join(tmpl.Dir, "run.sh")); err != nil {
		t.Errorf("release directory: %v", err)
	}
}

// TestRollingDeploy drives a 3-replica deploy one sync at a time and
// checks it at every step: at most one instance beyond the replica count,
// never fewer ready instances routed than replicas, each old instance out
// of the routes and drained before it is stopped, and the release
// complete only at the end.
func TestRollingDeploy(t *testing.T) {
	h := newHarness(t)
	h.release("hello", 3, "")
	h.deployReady("hello", 1)
	oldIDs := ids(h.rt.instances("hello", 1))
	fromSnap := len(h.edge.applied())

	n := h.release("hello", 3, "# v2\n")
	for step := 0; h.rel("hello", n).Status == store.StatusPending; step++ {
		if step > 60 {
			t.Fatal("release 2 still pending after 60 syncs")
		}
		h.sync("hello")
		if live := len(h.rt.instances("hello", 0)); live > 4 {
			t.Fatalf("step %d: %d instances run, want at most 3+1", step, live)
		}
		if h.rel("hello", n).Status == store.StatusComplete {
			cur, old := h.rt.instances("hello", n), h.rt.instances("hello", 1)
			ready := 0
			for _, in := range cur {
				if in.State == instance.Ready {
					ready++
				}
			}
			if len(cur) != 3 || ready != 3 || len(old) != 0 {
				t.Fatalf("release complete with %d new (%d ready) and %d old instances", len(cur), ready, len(old))
			}
			break
		}
		// Every other step the new instances are still starting: nothing
		// old may leave for them.
		if step%2 == 1 {
			h.rt.readyAll("hello")
		}
	}

	for i, s := range h.edge.applied()[fromSnap:] {
		if got := backends(s, host); len(got) < 3 {
			t.Errorf("snapshot %d (generation %d) routes %v: fewer than 3 ready instances", fromSnap+i, s.Generation, got)
		}
	}
	for _, id := range oldIDs {
		h.checkRetired(id)
	}
	if got := ids(h.rt.instances("hello", 0)); len(got) != 3 || !strings.HasPrefix(got[0], "hello-2-") {
		t.Errorf("running after the deploy: %v, want release 2's three", got)
	}
	sets, _ := h.rt.Sets(h.ctx, "hello")
	if len(sets) != 1 || sets[0].Release != n {
		t.Errorf("sets = %+v, want only release %d's (the old empty set forgotten)", sets, n)
	}
	if a := h.app("hello"); a.Stable != n || a.Target != n {
		t.Errorf("app = %+v, want stable and target %d", a, n)
	}
	// New instances were started one at a time: never a Scale by more
	// than one while old instances ran.
	prev := 0
	for _, e := range h.log.all() {
		if e.kind == "scale" && e.id == setKey("hello", n) {
			if e.n > prev+1 {
				t.Errorf("scaled release 2 from %d to %d at once while old instances ran", prev, e.n)
			}
			prev = e.n
		}
	}
	if got := backends(h.edge.last(), host); len(got) != 3 || !strings.HasPrefix(got[0], "hello-2-") {
		t.Errorf("final routes %v, want release 2's three", got)
	}
}

// TestCompleteWaitsForOldInstances checks that a release whose new set is
// at size and ready is not complete while an old instance still runs.
func TestCompleteWaitsForOldInstances(t *testing.T) {
	h := newHarness(t)
	h.release("hello", 1, "")
	h.deployReady("hello", 1)
	old := ids(h.rt.instances("hello", 1))[0]
	n := h.release("hello", 1, "# v2\n")
	h.sync("hello") // starts the new instance
	h.rt.readyAll("hello")

	h.rt.failRemove = errors.New("runtime unavailable")
	for range 3 {
		err := h.c.sync(h.ctx, "hello")
		if err == nil || !strings.Contains(err.Error(), "stop instance "+old) {
			t.Fatalf("sync with a failing Remove: err = %v, want it to say which instance it could not stop", err)
		}
		if s := h.rel("hello", n).Status; s != store.StatusPending {
			t.Fatalf("release %s while old instance %s still runs", s, old)
		}
	}
	if got := backends(h.edge.last(), host); len(got) != 1 || got[0] == old {
		t.Errorf("routes %v, want only the new instance while the old one is stuck draining", got)
	}

	h.rt.failRemove = nil
	h.sync("hello") // retires it
	if s := h.rel("hello", n).Status; s != store.StatusPending {
		t.Fatalf("release %s in the same step that removed the last old instance", s)
	}
	h.sync("hello")
	if s := h.rel("hello", n).Status; s != store.StatusComplete {
		t.Fatalf("release %s once the old instance is gone, want complete", s)
	}
	h.checkRetired(old)
}

func TestCrashLoopFailsRelease(t *testing.T) {
	tail := []string{"line 1", "line 2", "line 3", "line 4", "line 5", "panic: boom", "goroutine 1 [running]"}
	tests := []struct {
		name    string
		exit    instance.Exit
		want    []string
		notWant []string
	}{
		{"exit code", instance.Exit{Code: 3, LogTail: tail},
			[]string{"exited with code 3", "keeps crashing (2 restarts)", "panic: boom", "goroutine 1 [running]", "line 3"},
			[]string{"line 2"}},
		{"signal", instance.Exit{Code: -1, Signal: "SIGKILL"}, []string{"was killed by SIGKILL"}, []string{"last output"}},
		{"out of memory", instance.Exit{Code: -1, Signal: "SIGKILL", OOM: true}, []string{"resources.memory"}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.release("hello", 1, "")
			h.deployReady("hello", 1)
			stable := ids(h.rt.instances("hello", 1))[0]
			n := h.release("hello", 1, "# v2\n")
			h.sync("hello")
			bad := ids(h.rt.instances("hello", n))[0]

			exit := tc.exit
			h.rt.update("hello", bad, func(in *instance.Instance) {
				in.State, in.Restarts, in.LastExit = instance.CrashLoop, 1, &exit
			})
			h.sync("hello")
			if s := h.rel("hello", n).Status; s != store.StatusPending {
				t.Fatalf("release %s after one restart, want pending until %d", s, crashLimit)
			}
			h.rt.update("hello", bad, func(in *instance.Instance) { in.Restarts = 2 })
			h.sync("hello")

			rel := h.rel("hello", n)
			if rel.Status != store.StatusFailed {
				t.Fatalf("release %s after 2 restarts, want failed", rel.Status)
			}
			for _, w := range append([]string{bad}, tc.want...) {
				if !strings.Contains(rel.Message, w) {
					t.Errorf("message %q does not say %q", rel.Message, w)
				}
			}
			for _, w := range tc.notWant {
				if strings.Contains(rel.Message, w) {
					t.Errorf("message %q says %q", rel.Message, w)
				}
			}
			if a := h.app("hello"); a.Target != 1 || a.Stable != 1 {
				t.Errorf("app = target %d stable %d, want both back on 1", a.Target, a.Stable)
			}

			// The failed release's instances go; the stable one stays.
			h.sync("hello")
			h.sync("hello")
			sets, _ := h.rt.Sets(h.ctx, "hello")
			if len(sets) != 1 || sets[0].Release != 1 || !slices.Equal(ids(sets[0].Instances), []string{stable}) {
				t.Errorf("sets after the failure = %+v, want release 1 with %s only", sets, stable)
			}
			for _, e := range h.log.all() {
				if e.id == stable && e.kind != "apply" {
					t.Errorf("the stable instance got %s", e.kind)
				}
			}
			if got := backends(h.edge.last(), host); !slices.Equal(got, []string{stable}) {
				t.Errorf("routes %v, want the stable instance", got)
			}
		})
	}
}

func TestReadyTimeoutFailsRelease(t *testing.T) {
	h := newHarness(t)
	h.release("hello", 1, "")
	h.deployReady("hello", 1)
	n := h.release("hello", 1, "health:\n  ready_timeout: 1s\n")

	start := time.Now()
	h.sync("hello")
	if got := h.rt.templates[setKey("hello", n)].Health.ReadyTimeout; got != time.Second {
		t.Fatalf("template ready timeout = %v, want 1s", got)
	}
	bad := ids(h.rt.instances("hello", n))[0]
	h.rt.update("hello", bad, func(in *instance.Instance) { in.Message = "GET /: connection refused" })

	deadline := time.Now().Add(10 * time.Second)
	for h.rel("hello", n).Status == store.StatusPending {
		if time.Now().After(deadline) {
			t.Fatal("release still pending 10s after a 1s ready timeout")
		}
		time.Sleep(50 * time.Millisecond)
		h.sync("hello")
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("release failed after %v, before its 1s ready timeout", took)
	}
	rel := h.rel("hello", n)
	for _, w := range []string{"failed", "0 of 1 instance(s) ready", "health.ready_timeout", bad + ": GET /: connection refused"} {
		if !strings.Contains(rel.Status+" "+rel.Message, w) {
			t.Errorf("release %s %q does not say %q", rel.Status, rel.Message, w)
		}
	}
	if a := h.app("hello"); a.Target != 1 {
		t.Errorf("target = %d, want back on 1", a.Target)
	}
}

func TestScaleDown(t *testing.T) {
	h := newHarness(t)
	h.release("hello", 4, "")
	h.deployReady("hello", 1)
	all := ids(h.rt.instances("hello", 1)) // oldest first
	h.rt.setState("hello", all[1], instance.Unready)

	retired := func() []string {
		var out []string
		for _, e := range h.log.all() {
			if e.kind == "remove" {
				out = append(out, e.id)
			}
		}
		return out
	}
	if err := h.store.Scale(h.ctx, "hello", 2); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		h.sync("hello")
	}
	// The one not ready first, then the newest ready one.
	if got, want := retired(), []string{all[1], all[3]}; !slices.Equal(got, want) {
		t.Fatalf("removed %v, want %v", got, want)
	}
	if got := backends(h.edge.last(), host); !slices.Equal(got, []string{all[0], all[2]}) {
		t.Errorf("routes %v, want %v", got, []string{all[0], all[2]})
	}

	if err := h.store.Scale(h.ctx, "hello", 0); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		h.sync("hello")
	}
	if got, want := retired(), []string{all[1], all[3], all[2], all[0]}; !slices.Equal(got, want) {
		t.Fatalf("removed %v, want %v", got, want)
	}
	for _, id := range all {
		h.checkRetired(id)
	}
	if got := h.rt.instances("hello", 0); len(got) != 0 {
		t.Errorf("instances after scaling to 0: %v", ids(got))
	}
	last := h.edge.last()
	if !hasHost(last, host) || len(backends(last, host)) != 0 {
		t.Errorf("routes = %+v, want %s with no backend", last.Routes, host)
	}
	if h.rel("hello", 1).Status != store.StatusComplete {
		t.Error("scaling changed the release")
	}

	// And up again.
	if err := h.store.Scale(h.ctx, "hello", 2); err != nil {
		t.Fatal(err)
	}
	h.sync("hello")
	if got := h.rt.instances("hello", 1); len(got) != 2 {
		t.Errorf("scaled up to %d instances, want 2", len(got))
	}
}

// TestRouteSnapshotsFromSync checks what sync publishes: only ready
// instances, nothing when nothing changed, and generations that grow.
func TestRouteSnapshotsFromSync(t *testing.T) {
	h := newHarness(t)
	h.release("hello", 2, "")
	h.deployReady("hello", 1)
	before := h.edge.applied()
	gen := before[len(before)-1].Generation

	for range 3 {
		h.sync("hello")
	}
	if after := h.edge.applied(); len(after) != len(before) {
		t.Errorf("%d snapshots applied by syncs that changed nothing", len(after)-len(before))
	}

	inst := ids(h.rt.instances("hello", 1))
	h.rt.setState("hello", inst[0], instance.Unready)
	h.sync("hello")
	last := h.edge.last()
	if last.Generation <= gen || !slices.Equal(backends(last, host), inst[1:]) {
		t.Errorf("after an instance went unready: generation %d (was %d), routes %v", last.Generation, gen, backends(last, host))
	}
	for i, s := range h.edge.applied()[1:] {
		if prev := h.edge.applied()[i]; s.Generation <= prev.Generation {
			t.Errorf("generation %d follows %d", s.Generation, prev.Generation)
		}
	}
}
