package runtimetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
)

var scenarios = []struct {
	name string
	run  func(*testing.T, Harness)
}{
	{"ready", testReady},
	{"serve", testServe},
	{"scale", testScale},
	{"remove", testRemove},
	{"delete-set", testDeleteSet},
	{"crash-backoff", testCrashBackoff},
	{"never-ready", testNeverReady},
	{"liveness", testLiveness},
	{"graceful-stop", testGracefulStop},
	{"draining", testDraining},
	{"logs", testLogs},
	{"recover", testRecover},
	{"orphan", testOrphan},
}

// httpClient keeps no connections, so a stopped instance is never reached
// through one left open.
var httpClient = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// get fetches http://endpoint/path.
func get(endpoint, path string) (string, error) {
	resp, err := httpClient.Get("http://" + endpoint + path)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return string(b), nil
}

// awaitDead waits until endpoint refuses connections and, when pid is
// known, the process is gone.
func awaitDead(t *testing.T, endpoint string, pid int) {
	t.Helper()
	eventually(t, deadline, "instance at "+endpoint+" to be gone", func() (bool, string) {
		if _, err := get(endpoint, "/"); err == nil {
			return false, "still answers HTTP"
		}
		if pid > 0 && alive(pid) {
			return false, fmt.Sprintf("pid %d still runs", pid)
		}
		return true, ""
	})
}

// alive tells whether pid runs (a zombie does not).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := readProcStat(pid)
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || (b[i+2] != 'Z' && b[i+2] != 'X')
}

func testReady(t *testing.T, h Harness) {
	e := start(t, h, "ready")
	e.scale(e.template(1, nil), 1)
	s := e.awaitReady(1, 1)
	in := s.Instances[0]
	if s.App != "ready" || s.Size != 1 || in.App != "ready" || in.Release != 1 {
		t.Errorf("set = %+v, want app ready, release 1, size 1", s)
	}
	if !strings.HasPrefix(in.ID, "ready-1-") || in.Endpoint == "" || in.StartedAt.IsZero() {
		t.Errorf("instance = %+v, want id ready-1-*, an endpoint and a start time", in)
	}
	if in.Restarts != 0 || in.LastExit != nil {
		t.Errorf("fresh instance has restarts %d, last exit %+v", in.Restarts, in.LastExit)
	}
	apps, err := e.rt.Apps(context.Background())
	if err != nil || !slices.Equal(apps, []string{"ready"}) {
		t.Errorf("Apps = %v, %v; want [ready]", apps, err)
	}
}

func testServe(t *testing.T, h Harness) {
	e := start(t, h, "serve")
	e.scale(e.template(7, nil), 1)
	in := e.awaitReady(7, 1).Instances[0]
	body, err := get(in.Endpoint, "/")
	if err != nil {
		t.Fatalf("GET / of %s: %v", in.ID, err)
	}
	if want := in.ID + " 7"; strings.TrimSpace(body) != want {
		t.Errorf("GET / = %q, want %q", body, want)
	}
}

func testScale(t *testing.T, h Harness) {
	e := start(t, h, "scale")
	tm := e.template(1, nil)
	e.scale(tm, 1)
	first := e.awaitReady(1, 1).Instances[0]
	e.scale(tm, 3)
	s := e.awaitReady(1, 3)
	if _, ok := find(s, first.ID); !ok {
		t.Fatalf("growing replaced the first instance %s: %s", first.ID, describe(s))
	}
	endpoints := map[string]bool{}
	for _, in := range s.Instances {
		if body, err := get(in.Endpoint, "/"); err != nil || !strings.HasPrefix(body, in.ID+" ") {
			t.Errorf("instance %s at %s answered %q, %v", in.ID, in.Endpoint, body, err)
		}
		endpoints[in.Endpoint] = true
	}
	if len(endpoints) != 3 {
		t.Errorf("3 instances share endpoints: %s", describe(s))
	}
	e.scale(tm, 1)
	after, _ := e.set(1)
	if len(after.Instances) != 1 || after.Size != 1 {
		t.Fatalf("after scaling to 1, want one instance: %s", describe(after))
	}
	kept := after.Instances[0]
	if kept.ID != first.ID && !startedTogether(s, h.StartResolution) {
		t.Fatalf("after scaling to 1 (newest leave first), want only %s: %s", first.ID, describe(after))
	}
	for _, in := range s.Instances {
		if in.ID != kept.ID {
			awaitDead(t, in.Endpoint, in.PID)
		}
	}
	if _, err := get(kept.Endpoint, "/"); err != nil {
		t.Errorf("the remaining instance stopped serving: %v", err)
	}
}

// startedTogether reports whether s's instances started within
// resolution of each other, too close for the runtime to tell the
// newest.
func startedTogether(s instance.Set, resolution time.Duration) bool {
	if resolution <= 0 || len(s.Instances) == 0 {
		return false
	}
	first, last := s.Instances[0].StartedAt, s.Instances[0].StartedAt
	for _, in := range s.Instances[1:] {
		if in.StartedAt.Before(first) {
			first = in.StartedAt
		}
		if in.StartedAt.After(last) {
			last = in.StartedAt
		}
	}
	return last.Sub(first) <= resolution
}

func testRemove(t *testing.T, h Harness) {
	e := start(t, h, "remove")
	e.scale(e.template(1, nil), 2)
	s := e.awaitReady(1, 2)
	gone, kept := s.Instances[0], s.Instances[1]
	if err := e.rt.Remove(context.Background(), e.app, gone.ID); err != nil {
		t.Fatalf("remove %s: %v", gone.ID, err)
	}
	after, _ := e.set(1)
	if after.Size != 1 || len(after.Instances) != 1 || after.Instances[0].ID != kept.ID {
		t.Fatalf("after removing %s want only %s: %s", gone.ID, kept.ID, describe(after))
	}
	awaitDead(t, gone.Endpoint, gone.PID)
	if err := e.rt.Remove(context.Background(), e.app, gone.ID); err == nil {
		t.Errorf("removing %s twice succeeded, want an error", gone.ID)
	}
	// The set stays at its new size: nothing replaces the removed one.
	e.awaitReady(1, 1)
}

func testDeleteSet(t *testing.T, h Harness) {
	e := start(t, h, "delete")
	e.scale(e.template(1, nil), 2)
	e.scale(e.template(2, nil), 1)
	s := e.awaitReady(1, 2)
	e.awaitReady(2, 1)
	if err := e.rt.DeleteSet(context.Background(), e.app, 1); err != nil {
		t.Fatalf("delete set: %v", err)
	}
	sets, err := e.rt.Sets(context.Background(), e.app)
	if err != nil || len(sets) != 1 || sets[0].Release != 2 {
		t.Fatalf("after deleting release 1, Sets = %+v, %v; want only release 2", sets, err)
	}
	for _, in := range s.Instances {
		awaitDead(t, in.Endpoint, in.PID)
	}
	if err := e.rt.DeleteSet(context.Background(), e.app, 2); err != nil {
		t.Fatalf("delete set 2: %v", err)
	}
	if err := e.rt.DeleteSet(context.Background(), e.app, 2); err != nil {
		t.Errorf("deleting a deleted set: %v, want nil", err)
	}
	if apps, err := e.rt.Apps(context.Background()); err != nil || len(apps) != 0 {
		t.Errorf("Apps after deleting every set = %v, %v; want none", apps, err)
	}
}

func testCrashBackoff(t *testing.T, h Harness) {
	e := start(t, h, "crashy")
	e.scale(e.template(1, map[string]string{"TESTAPP_MODE": "crash", "TESTAPP_EXIT_CODE": "3"}), 1)
	type crash struct {
		at, next time.Time
		restarts int
	}
	// Each round is a backoff (at most about 400ms) and a start.
	slack := h.StartLatency
	if slack <= 0 {
		slack = 3 * time.Second
	}
	var crashes []crash
	eventually(t, max(deadline, 7*(400*time.Millisecond+slack)), "7 crash-loop rounds", func() (bool, string) {
		s, _ := e.set(1)
		if len(s.Instances) != 1 {
			return false, describe(s)
		}
		in := s.Instances[0]
		if in.State != instance.CrashLoop || in.LastExit == nil {
			return false, describe(s)
		}
		if n := len(crashes); n > 0 && crashes[n-1].at.Equal(in.LastExit.At) {
			return false, describe(s)
		}
		if in.LastExit.Code != 3 {
			t.Fatalf("crash-looping instance reports exit code %d, want 3: %+v", in.LastExit.Code, in.LastExit)
		}
		if !slices.ContainsFunc(in.LastExit.LogTail, func(l string) bool { return strings.Contains(l, "crashing with code 3") }) {
			t.Fatalf("log tail %q lacks the app's last line", in.LastExit.LogTail)
		}
		if in.Message == "" || !in.NextStart.After(in.LastExit.At) {
			t.Fatalf("crash-looping instance lacks a message or a next start after its exit: %+v", in)
		}
		crashes = append(crashes, crash{at: in.LastExit.At, next: in.NextStart, restarts: in.Restarts})
		return len(crashes) >= 7, describe(s)
	})
	var delays []time.Duration
	for i, c := range crashes {
		d := c.next.Sub(c.at)
		delays = append(delays, d)
		if i == 0 {
			continue
		}
		prev := crashes[i-1]
		if c.restarts != prev.restarts+1 {
			continue // a round went by unobserved
		}
		gap := c.at.Sub(prev.at)
		if gap < delays[i-1]-5*time.Millisecond {
			t.Errorf("round %d restarted %s after the exit, before its backoff of %s", i, gap, delays[i-1])
		}
		if gap > delays[i-1]+slack {
			t.Errorf("round %d restarted %s after the exit, far past its backoff of %s", i, gap, delays[i-1])
		}
	}
	t.Logf("backoffs: %v", delays)
	capped := delays[len(delays)-1]
	if !(delays[0] < delays[1] && delays[1] < delays[2]) {
		t.Errorf("backoff does not grow: %v", delays)
	}
	for i := 1; i < len(delays); i++ {
		// Reported delays carry a few ms of bookkeeping; allow for it.
		if delays[i] < delays[i-1]-delays[i-1]/20 {
			t.Errorf("backoff shrank without a reset: %v", delays)
		}
	}
	for _, d := range delays[len(delays)-3:] {
		if diff := d - capped; diff < -capped/10 || diff > capped/10 {
			t.Errorf("backoff does not hold at its cap: %v", delays)
		}
	}
}

func testNeverReady(t *testing.T, h Harness) {
	e := start(t, h, "never")
	e.scale(e.template(1, map[string]string{"TESTAPP_MODE": "never-ready"}), 1)
	var in instance.Instance
	eventually(t, deadline, "the never-ready app to listen", func() (bool, string) {
		s, _ := e.set(1)
		if len(s.Instances) != 1 || s.Instances[0].Endpoint == "" {
			return false, describe(s)
		}
		in = s.Instances[0]
		_, err := get(in.Endpoint, "/")
		return err == nil, fmt.Sprint(err)
	})
	// It listens; its probe keeps failing. Watch it for many probe rounds.
	end := time.Now().Add(time.Second)
	for time.Now().Before(end) {
		s, _ := e.set(1)
		if len(s.Instances) != 1 || s.Instances[0].State != instance.Starting || s.Instances[0].Restarts != 0 {
			t.Fatalf("never-ready instance must stay starting (and not be restarted): %s", describe(s))
		}
		time.Sleep(poll)
	}
}

func testLiveness(t *testing.T, h Harness) {
	e := start(t, h, "liveness")
	e.scale(e.template(1, nil), 1)
	in := e.awaitReady(1, 1).Instances[0]
	if _, err := get(in.Endpoint, "/sick"); err != nil {
		t.Fatalf("make the instance sick: %v", err)
	}
	sawUnready := false
	eventually(t, deadline, "the hung instance to be restarted and ready", func() (bool, string) {
		s, _ := e.set(1)
		if len(s.Instances) != 1 {
			return false, describe(s)
		}
		now := s.Instances[0]
		sawUnready = sawUnready || now.State == instance.Unready
		return now.Restarts >= 1 && now.State == instance.Ready && now.StartedAt != in.StartedAt, describe(s)
	})
	if !sawUnready {
		t.Errorf("the sick instance was never reported unready before its restart")
	}
	after, _ := e.set(1)
	if got := after.Instances[0]; got.ID != in.ID || got.LastExit == nil {
		t.Errorf("restarted instance = %+v, want the same id %s with a last exit", got, in.ID)
	}
}

func testGracefulStop(t *testing.T, h Harness) {
	e := start(t, h, "graceful")
	e.scale(e.template(1, nil), 2)
	in := e.awaitReady(1, 2).Instances[0]
	if err := e.rt.Remove(context.Background(), e.app, in.ID); err != nil {
		t.Fatalf("remove: %v", err)
	}
	eventually(t, deadline, "the log to show SIGTERM", func() (bool, string) {
		logs := h.Logs(t, e.rt, in.ID)
		return strings.Contains(logs, "got SIGTERM"), logs
	})
}

func testDraining(t *testing.T, h Harness) {
	e := start(t, h, "drain")
	tm := e.template(1, nil)
	e.scale(tm, 2)
	s := e.awaitReady(1, 2)
	leaving, staying := s.Instances[1], s.Instances[0]
	if err := e.rt.MarkDraining(context.Background(), e.app, leaving.ID); err != nil {
		t.Fatalf("mark draining: %v", err)
	}
	// Probes keep passing; the state must stay Draining.
	end := time.Now().Add(500 * time.Millisecond)
	for time.Now().Before(end) {
		s, _ := e.set(1)
		got, _ := find(s, leaving.ID)
		other, _ := find(s, staying.ID)
		if got.State != instance.Draining || other.State != instance.Ready || s.Ready() != 1 {
			t.Fatalf("want %s draining and %s ready: %s", leaving.ID, staying.ID, describe(s))
		}
		time.Sleep(poll)
	}
	if _, err := get(leaving.Endpoint, "/"); err != nil {
		t.Errorf("a draining instance must keep running: %v", err)
	}
	// Shrinking takes the draining instance first.
	e.scale(tm, 1)
	after, _ := e.set(1)
	if len(after.Instances) != 1 || after.Instances[0].ID != staying.ID {
		t.Fatalf("scaling down must remove the draining %s: %s", leaving.ID, describe(after))
	}
	awaitDead(t, leaving.Endpoint, leaving.PID)
}

func testLogs(t *testing.T, h Harness) {
	e := start(t, h, "logs")
	e.scale(e.template(1, nil), 1)
	in := e.awaitReady(1, 1).Instances[0]
	eventually(t, deadline, "the start line in the logs", func() (bool, string) {
		logs := h.Logs(t, e.rt, in.ID)
		return strings.Contains(logs, "started "+in.ID+"\n"), logs
	})
}

func testRecover(t *testing.T, h Harness) {
	e := start(t, h, "recover")
	e.scale(e.template(1, nil), 2)
	before := e.awaitReady(1, 2)

	h.Close(e.rt)
	for _, in := range before.Instances {
		if _, err := get(in.Endpoint, "/"); err != nil {
			t.Fatalf("instance %s stopped serving when its control plane stopped: %v", in.ID, err)
		}
	}
	e.rt = e.open()
	after := e.awaitReady(1, 2)
	for _, old := range before.Instances {
		now, ok := find(after, old.ID)
		switch {
		case !ok:
			t.Fatalf("instance %s was not adopted: %s", old.ID, describe(after))
		case now.PID != old.PID || !now.StartedAt.Equal(old.StartedAt) || now.Endpoint != old.Endpoint:
			t.Errorf("instance %s was restarted, not adopted: before pid %d %s %s, after pid %d %s %s",
				old.ID, old.PID, old.StartedAt, old.Endpoint, now.PID, now.StartedAt, now.Endpoint)
		case now.Restarts != old.Restarts:
			t.Errorf("adopting %s counted a restart: %d -> %d", old.ID, old.Restarts, now.Restarts)
		}
		if body, err := get(now.Endpoint, "/"); err != nil || !strings.HasPrefix(body, old.ID+" ") {
			t.Errorf("adopted %s answered %q, %v", old.ID, body, err)
		}
	}

	victim, other := before.Instances[0], before.Instances[1]
	if victim.PID <= 0 {
		// Adoption is shown; the runtime's platform restarts what dies.
		t.Log("runtime reports no pids; an adopted instance is not killed")
		return
	}
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", victim.PID, err)
	}
	eventually(t, deadline, "the killed adopted instance to be restarted", func() (bool, string) {
		s, _ := e.set(1)
		now, ok := find(s, victim.ID)
		return ok && now.Restarts == victim.Restarts+1 && now.PID != victim.PID && now.State == instance.Ready, describe(s)
	})
	s, _ := e.set(1)
	now, _ := find(s, victim.ID)
	if now.LastExit == nil {
		t.Fatalf("restarted instance has no last exit: %+v", now)
	}
	if !h.Capabilities.ExitCodeOnRecover && now.LastExit.Code != -1 {
		t.Errorf("adopted instance's exit code = %d, want -1 (unknown)", now.LastExit.Code)
	}
	if o, _ := find(s, other.ID); o.PID != other.PID || o.Restarts != other.Restarts {
		t.Errorf("the other instance was disturbed: %+v", o)
	}
}

func testOrphan(t *testing.T, h Harness) {
	if h.Forget == nil {
		t.Skip("harness cannot edit a stopped runtime's state")
	}
	e := start(t, h, "orphan")
	e.scale(e.template(1, nil), 1)
	e.scale(e.template(2, nil), 1)
	kept := e.awaitReady(1, 1).Instances[0]
	orphan := e.awaitReady(2, 1).Instances[0]

	h.Close(e.rt)
	h.Forget(t, e.dir, e.app, 2)
	e.rt = e.open()

	awaitDead(t, orphan.Endpoint, orphan.PID)
	if _, ok := e.set(2); ok {
		t.Errorf("a forgotten set came back after recovery")
	}
	s := e.awaitReady(1, 1)
	if now := s.Instances[0]; now.ID != kept.ID || now.PID != kept.PID {
		t.Errorf("the wanted instance was not adopted: before %+v, after %+v", kept, now)
	}
}
