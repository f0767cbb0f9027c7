package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/instance"
)

// Backoff of the crash loop test's server: short, so the whole ladder up
// to the cap and three gaps at it take about three seconds.
const (
	loopBackoff    = 100 * time.Millisecond
	loopBackoffMax = 800 * time.Millisecond
)

// Tolerances of a measured restart gap, taken between the instance.exited
// event and the next instance.started event. The backoff counts from the
// exit, which the exited event records a few milliseconds later, so a gap
// can be that much shorter than its delay: gapEarly. It can be longer by
// the time the next start takes (fork and exec as the app user, sets.json
// fsynced, the event written) on a loaded two-core machine: gapLate. With
// these, a gap at the 800ms cap lies in [750ms, 1.2s], which tells it
// apart from both the step below (400ms) and a cap that failed to hold
// (1.6s).
const (
	gapEarly = 50 * time.Millisecond
	gapLate  = 400 * time.Millisecond
)

// TestCrashLoopBackoff makes a serving instance crash on every start and
// checks what a user sees: restarts spaced 100, 200, 400ms and then held
// at the 800ms cap, `skiff status` naming the exit code and the app's last
// words, and the instance back in service once the cause is gone.
func TestCrashLoopBackoff(t *testing.T) {
	s := newServer(t, "--restart-backoff", loopBackoff.String(), "--restart-backoff-max", loopBackoffMax.String())
	s.start()
	crashFile := filepath.Join(worldWritableDir(t), "crash")
	b := pack(t, appDir(t, fmt.Sprintf(`name: loopy
command: ["./testapp"]
replicas: 1
env: {CRASH_FILE: %q}
health: {path: /healthz, interval: 200ms, timeout: 200ms}
`, crashFile)))
	ctx := context.Background()
	rel, err := deploy(ctx, s.client, b)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitStatus(t, s.client, "loopy", rel.Number, 30*time.Second); r.Status != "complete" {
		t.Fatalf("deploy: %s: %s", r.Status, r.Message)
	}
	in := onlyInstance(t, s.client, "loopy")
	wantBody := fmt.Sprintf("release %d instance %s", rel.Number, in.ID)
	if body, err := get(http.DefaultClient, s.httpAddr, "loopy.localhost"); err != nil || body != wantBody {
		t.Fatalf("before the crash loop the edge answered %q, %v; want %q", body, err, wantBody)
	}
	if in.PID <= 0 {
		// Kill(0) would hit the test's own process group.
		t.Fatalf("instance %s reports pid %d", in.ID, in.PID)
	}
	mark := lastEventID(t, s.client, "loopy")

	// From now on every start crashes; the kill ends the good run.
	if err := os.WriteFile(crashFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(in.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill instance %s (pid %d): %v", in.ID, in.PID, err)
	}

	// Wait for the ladder and three gaps at the cap: 100+200+400+3×800ms.
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond,
		loopBackoffMax, loopBackoffMax, loopBackoffMax}
	var restarts []restart
	eventually(t, 20*time.Second, func() error {
		var err error
		restarts, err = restartsSince(s.client, "loopy", mark)
		if err != nil {
			return err
		}
		if len(restarts) < len(want) {
			return fmt.Errorf("%d restarts seen so far, want %d: %v", len(restarts), len(want), restarts)
		}
		return nil
	})
	t.Logf("restarts after the kill: %v", restarts)
	if r := restarts[0]; r.signal == "" {
		t.Errorf("first exit: %+v; want the SIGKILL the test sent", r)
	}
	for i, r := range restarts {
		// Polling may have caught more restarts than wanted: all at the cap.
		d := loopBackoffMax
		if i < len(want) {
			d = want[i]
		}
		if r.delay != d {
			t.Errorf("restart %d: announced delay %s, want %s", i+1, r.delay, d)
		}
		if r.gap < d-gapEarly || r.gap > d+gapLate {
			t.Errorf("restart %d: started %s after the exit, want %s (-%s/+%s)", i+1, r.gap, d, gapEarly, gapLate)
		}
		if i > 0 && (r.code != 3 || r.signal != "") {
			t.Errorf("restart %d followed exit code %d signal %q; want exit code 3", i+1, r.code, r.signal)
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	// The CLI shows the crash loop, its exit code and the app's last words.
	eventually(t, 10*time.Second, func() error {
		out, err := skiffCLI(s.dataDir, "status", "loopy")
		if err != nil {
			return err
		}
		if !strings.Contains(out, "crash-looping (exit 3") {
			return fmt.Errorf("`skiff status loopy` shows no crash loop with exit 3:\n%s", out)
		}
		if !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool { return strings.TrimSpace(l) == "crashing on purpose" }) {
			return fmt.Errorf("`skiff status loopy` lacks the app's last output line:\n%s", out)
		}
		return nil
	})

	// The cause gone, the next restart stays up and serves.
	if err := os.Remove(crashFile); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() error {
		st, err := s.client.App(ctx, "loopy")
		if err != nil {
			return err
		}
		if len(st.Sets) != 1 || len(st.Sets[0].Instances) != 1 {
			return fmt.Errorf("sets %+v; want one instance", st.Sets)
		}
		got := st.Sets[0].Instances[0]
		if got.ID != in.ID || got.State != instance.Ready || got.PID == in.PID {
			return fmt.Errorf("instance %s is %s (pid %d, %s); want %s ready again in a new process", got.ID, got.State, got.PID, got.Message, in.ID)
		}
		if got.Restarts < len(want) {
			return fmt.Errorf("instance %s counts %d restarts, want at least %d", got.ID, got.Restarts, len(want))
		}
		return nil
	})
	eventually(t, 5*time.Second, func() error {
		body, err := get(http.DefaultClient, s.httpAddr, "loopy.localhost")
		if err != nil {
			return err
		}
		if body != wantBody {
			return fmt.Errorf("edge answered %q, want %q", body, wantBody)
		}
		return nil
	})
}

// restart is one exit and the start that followed it, from the event log.
type restart struct {
	code   int
	signal string
	// delay is the backoff the supervisor announced.
	delay time.Duration
	// gap is from the exited event to the next started event.
	gap time.Duration
}

func (r restart) String() string {
	how := fmt.Sprintf("exit %d", r.code)
	if r.signal != "" {
		how = r.signal
	}
	return fmt.Sprintf("{%s, delay %s, gap %s}", how, r.delay, r.gap.Round(time.Millisecond))
}

// restartsSince pairs app's exits after event id mark with the starts that
// followed them.
func restartsSince(c *client.Client, app string, mark int64) ([]restart, error) {
	var out []restart
	var cur *restart
	var exitAt time.Time
	err := c.Events(context.Background(), client.EventQuery{App: app, After: mark}, func(e api.Event) error {
		switch e.Kind {
		case "instance.exited":
			code, _ := e.Data["code"].(float64) // JSON numbers decode as float64
			sig, _ := e.Data["signal"].(string)
			cur, exitAt = &restart{code: int(code), signal: sig}, e.Time
		case "instance.restarting":
			if cur == nil {
				return fmt.Errorf("event %d %q follows no exit", e.ID, e.Message)
			}
			ms, ok := e.Data["delay_ms"].(float64)
			if !ok {
				return fmt.Errorf("event %d %q has no delay_ms: %v", e.ID, e.Message, e.Data)
			}
			cur.delay = time.Duration(ms) * time.Millisecond
		case "instance.started":
			if cur != nil {
				cur.gap = e.Time.Sub(exitAt)
				out = append(out, *cur)
				cur = nil
			}
		}
		return nil
	})
	return out, err
}

// lastEventID is the id of app's newest event.
func lastEventID(t testing.TB, c *client.Client, app string) int64 {
	t.Helper()
	var id int64
	if err := c.Events(context.Background(), client.EventQuery{App: app}, func(e api.Event) error {
		id = max(id, e.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return id
}

// onlyInstance returns app's single instance.
func onlyInstance(t testing.TB, c *client.Client, app string) instance.Instance {
	t.Helper()
	st, err := c.App(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Sets) != 1 || len(st.Sets[0].Instances) != 1 {
		t.Fatalf("app %s runs %+v; want one instance", app, st.Sets)
	}
	return st.Sets[0].Instances[0]
}

// worldWritableDir makes a directory the unprivileged app user can write
// in and reach (t.TempDir's parent is 0700).
func worldWritableDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "skiff-e2e-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// skiffCLI runs the real skiff binary against the server of dataDir and
// returns its standard output.
func skiffCLI(dataDir string, args ...string) (string, error) {
	cmd := exec.Command(bins.skiff, args...)
	cmd.Env = append(os.Environ(), "SKIFF_DATA_DIR="+dataDir, "SKIFF_SERVER=")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("skiff %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}
