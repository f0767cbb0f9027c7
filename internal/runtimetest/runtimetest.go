// Package runtimetest is the conformance suite every runtime passes: the
// same scenarios (start, serve, scale, remove, crash loops with backoff,
// probes, graceful stop, draining, logs, recovery after a control-plane
// restart, orphans) run against any controller.Runtime through a Harness.
//
// The instances run the test app in ./testapp, built with BuildTestApp.
package runtimetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/controller"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

// Harness adapts one runtime to the suite.
type Harness struct {
	// New returns a started runtime whose state lives in dir. Called again
	// with the same dir it must recover (the control plane restarted).
	// Runtimes should back off crash restarts from about 50ms to a cap of
	// about 400ms, read log tails into Exit.LogTail, and use a short stop
	// grace (the suite's deadlines assume about a second).
	New func(t *testing.T, dir string) controller.Runtime
	// Close stops a runtime's control plane without stopping instances.
	Close func(rt controller.Runtime)
	// Template returns a template running the test app with env. Its health
	// check should be GET /healthz every ~50ms.
	Template func(t *testing.T, app string, release int, env map[string]string) instance.Template
	// Logs returns what an instance wrote.
	Logs func(t *testing.T, rt controller.Runtime, id string) string
	// Forget edits the saved state in dir of a closed runtime so that it no
	// longer knows the set (app, release), as a crash right after a
	// recorded DeleteSet would leave it. Nil skips the orphan scenario.
	Forget func(t *testing.T, dir, app string, release int)
	// Capabilities of the runtime, for skips.
	Capabilities supervisor.Capabilities
	// StartResolution is how finely the runtime tells which of its
	// instances started last: instances started within it of each other
	// may leave in any order when a set shrinks. Zero means exactly, as
	// for processes and containers; Kubernetes records a pod's creation
	// to the second.
	StartResolution time.Duration
	// Skip names the scenarios a runtime leaves to its platform, each
	// with the reason the suite reports: on Kubernetes the kubelet, not
	// skiff, restarts crashed containers and runs the probes.
	Skip map[string]string
	// StartLatency is how long, at worst, the runtime may take from the
	// supervisor's start of an instance to its process running, on a busy
	// machine. The crash-loop scenario allows it on top of each backoff.
	// Default 3s, fit for processes; a container engine needs more (it
	// sets up a network endpoint and a port proxy per start).
	StartLatency time.Duration
}

// BuildTestApp builds ./testapp into a new directory under /tmp, made
// readable and executable by every user, and
// returns the directory; the binary is "testapp" in it. It is removed when
// t ends. Build it once per top-level test.
func BuildTestApp(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "skiff-testapp-")
	if err != nil {
		t.Fatalf("make test app directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("make test app directory readable: %v", err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			goTool = "/usr/local/go/bin/go"
		}
	}
	cmd := exec.Command(goTool, "build", "-o", filepath.Join(dir, "testapp"), "github.com/skiff-sh/skiff/internal/runtimetest/testapp")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build test app: %v\n%s", err, out)
	}
	if err := os.Chmod(filepath.Join(dir, "testapp"), 0o755); err != nil {
		t.Fatalf("make test app executable: %v", err)
	}
	return dir
}

// ReleaseDir copies the test app built in src into a new directory (under
// /tmp, or /var/lib/skiff-test as root), as an upload is unpacked for one release: owned by the current
// user with mode 0700, removed when t ends. A runtime that gives each app
// a user of its own hands such a directory over to that user, so tests
// that start apps under several names give each its own.
func ReleaseDir(t testing.TB, src string) string {
	t.Helper()
	// As root, apps get a private /tmp that would hide a release there.
	parent := "/tmp"
	if os.Geteuid() == 0 {
		parent = "/var/lib/skiff-test"
		if err := os.MkdirAll(parent, 0o711); err != nil {
			t.Fatalf("make release directory: %v", err)
		}
	}
	dir, err := os.MkdirTemp(parent, "skiff-release-")
	if err != nil {
		t.Fatalf("make release directory: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	b, err := os.ReadFile(filepath.Join(src, "testapp"))
	if err != nil {
		t.Fatalf("copy test app: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "testapp"), b, 0o755); err != nil {
		t.Fatalf("copy test app: %v", err)
	}
	return dir
}

// Run runs every scenario against h.
func Run(t *testing.T, h Harness) {
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			if why, ok := h.Skip[sc.name]; ok {
				t.Skip(why)
			}
			t.Parallel()
			sc.run(t, h)
		})
	}
}

// deadline bounds every wait in the suite: generous, since scenarios run
// in parallel on small machines under the race detector.
const deadline = 20 * time.Second

// poll is how often awaited conditions are checked.
const poll = 10 * time.Millisecond

// eventually waits until cond holds, failing with its last word after
// timeout.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	end := time.Now().Add(timeout)
	last := ""
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if msg != "" {
			last = msg
		}
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, last)
		}
		time.Sleep(poll)
	}
}

// env is a runtime under test with its scenario's helpers.
type env struct {
	t   *testing.T
	h   Harness
	rt  controller.Runtime
	dir string
	app string
}

// start makes a runtime in a fresh directory for app; its sets are deleted
// and the runtime closed when the test ends.
func start(t *testing.T, h Harness, app string) *env {
	dir := t.TempDir()
	e := &env{t: t, h: h, dir: dir, app: app}
	e.rt = e.open()
	return e
}

// open starts a runtime on e.dir and registers its cleanup.
func (e *env) open() controller.Runtime {
	rt := e.h.New(e.t, e.dir)
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), deadline)
		defer cancel()
		if sets, err := rt.Sets(ctx, e.app); err == nil {
			for _, s := range sets {
				if err := rt.DeleteSet(ctx, e.app, s.Release); err != nil {
					e.t.Errorf("cleanup: delete set %d: %v", s.Release, err)
				}
			}
		}
		e.h.Close(rt)
	})
	return rt
}

func (e *env) template(release int, env map[string]string) instance.Template {
	return e.h.Template(e.t, e.app, release, env)
}

func (e *env) scale(t instance.Template, n int) {
	e.t.Helper()
	if err := e.rt.Scale(context.Background(), t, n); err != nil {
		e.t.Fatalf("scale release %d to %d: %v", t.Release, n, err)
	}
}

// set returns the set of release, or a zero Set.
func (e *env) set(release int) (instance.Set, bool) {
	e.t.Helper()
	sets, err := e.rt.Sets(context.Background(), e.app)
	if err != nil {
		e.t.Fatalf("sets: %v", err)
	}
	for _, s := range sets {
		if s.Release == release {
			return s, true
		}
	}
	return instance.Set{}, false
}

// awaitReady waits until release's set has n instances, all ready, and
// returns it.
func (e *env) awaitReady(release, n int) instance.Set {
	e.t.Helper()
	var got instance.Set
	eventually(e.t, deadline, fmt.Sprintf("%d ready instance(s) of release %d", n, release), func() (bool, string) {
		s, _ := e.set(release)
		got = s
		return len(s.Instances) == n && s.Ready() == n, describe(s)
	})
	return got
}

// describe renders a set for failure messages.
func describe(s instance.Set) string {
	var b strings.Builder
	fmt.Fprintf(&b, "release %d size %d:", s.Release, s.Size)
	for _, in := range s.Instances {
		fmt.Fprintf(&b, " [%s %s pid=%d restarts=%d %q]", in.ID, in.State, in.PID, in.Restarts, in.Message)
	}
	return b.String()
}

// find returns instance id of s.
func find(s instance.Set, id string) (instance.Instance, bool) {
	for _, in := range s.Instances {
		if in.ID == id {
			return in, true
		}
	}
	return instance.Instance{}, false
}
