package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/testenv"
)

// TestAdoptAfterKill kills the server with SIGKILL under a running app.
// The app must not notice: it answers on its own ports while the server
// is down, the restarted server adopts the very same processes (same ids,
// pids and kernel start times) and routes to them, the log lines written
// meanwhile are collected, and an adopted instance that then dies is
// restarted like any other, without a stray process left behind.
func TestAdoptAfterKill(t *testing.T) {
	s := newServer(t, "--restart-backoff", "100ms")
	s.start()
	b := pack(t, appDir(t, `name: sticky
command: ["./testapp"]
replicas: 2
env: {LOG_REQUESTS: "1"}
health: {path: /healthz, interval: 200ms, timeout: 200ms}
`))
	ctx := context.Background()
	rel, err := deploy(ctx, s.client, b)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitStatus(t, s.client, "sticky", rel.Number, 30*time.Second); r.Status != "complete" {
		t.Fatalf("deploy: %s: %s", r.Status, r.Message)
	}
	before := instancesByID(t, s.client, "sticky")
	if len(before) != 2 {
		t.Fatalf("want 2 instances, got %v", before)
	}
	ticks := map[string]uint64{}
	for id, in := range before {
		if in.PID <= 0 {
			// Kill(0) would hit the test's own process group.
			t.Fatalf("instance %s reports pid %d", id, in.PID)
		}
		ticks[id] = startTicks(t, in.PID)
	}

	s.kill()
	// While skiff is away the app answers on its own endpoints.
	unique := strconv.FormatInt(time.Now().UnixNano(), 36)
	downPath, upPath := "/while-down-"+unique, "/after-restart-"+unique
	var downID string
	for id, in := range before {
		body, err := getURL("http://" + in.Endpoint + "/")
		if want := fmt.Sprintf("release %d instance %s", rel.Number, id); err != nil || body != want {
			t.Fatalf("with the server down, %s answered %q, %v; want %q", in.Endpoint, body, err, want)
		}
		downID = id
	}
	if _, err := getURL("http://" + before[downID].Endpoint + downPath); err != nil {
		t.Fatalf("with the server down, %s: %v", downPath, err)
	}

	s.start()
	// The same processes, adopted, not restarted.
	eventually(t, 10*time.Second, func() error {
		if err := converged(s.client, "sticky", rel.Number, 2); err != nil {
			return err
		}
		after, err := observe(s.client, "sticky")
		if err != nil {
			return err
		}
		for id, in := range before {
			got, ok := after[id]
			switch {
			case !ok:
				return fmt.Errorf("instance %s is gone after the restart; instances now: %v", id, slices.Collect(maps.Keys(after)))
			case got.PID != in.PID || !got.StartedAt.Equal(in.StartedAt) || got.Endpoint != in.Endpoint:
				return fmt.Errorf("instance %s was pid %d started %s at %s, now pid %d started %s at %s",
					id, in.PID, in.StartedAt, in.Endpoint, got.PID, got.StartedAt, got.Endpoint)
			case got.Restarts != in.Restarts:
				return fmt.Errorf("instance %s counts %d restarts after adoption, %d before", id, got.Restarts, in.Restarts)
			}
		}
		return nil
	})
	for id, in := range before {
		t.Logf("instance %s adopted: pid %d, started %s (tick %d), at %s", id, in.PID, in.StartedAt.Format(time.RFC3339Nano), ticks[id], in.Endpoint)
		if got := startTicks(t, in.PID); got != ticks[id] {
			t.Fatalf("pid %d of instance %s started at tick %d, now %d: a new process", in.PID, id, ticks[id], got)
		}
	}

	// The edge routes to the adopted instances, both of them.
	ids := slices.Sorted(maps.Keys(before))
	seen := map[string]bool{}
	eventually(t, 5*time.Second, func() error {
		body, err := get(http.DefaultClient, s.httpAddr, "sticky.localhost")
		if err != nil {
			return err
		}
		if !isAnswerOf(body, rel.Number, ids) {
			t.Fatalf("after the restart the edge answered %q; want one of %v", body, ids)
		}
		seen[body] = true
		if len(seen) < len(ids) {
			return fmt.Errorf("answers so far %v; want one from each of %v", slices.Collect(maps.Keys(seen)), ids)
		}
		return nil
	})
	if _, err := getPath(s.httpAddr, "sticky.localhost", upPath); err != nil {
		t.Fatal(err)
	}

	// Both lines are in the app's log: the one written while skiff was
	// away, and the one after.
	eventually(t, 10*time.Second, func() error {
		lines, err := logTexts(s.client, "sticky")
		if err != nil {
			return err
		}
		var missing []string
		for _, want := range []string{downID + " request " + downPath, "request " + upPath} {
			if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasSuffix(l, want) }) {
				missing = append(missing, want)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("app log lacks %q; it has %d lines, last %q", missing, len(lines), lines[max(0, len(lines)-5):])
		}
		return nil
	})

	// An adopted instance that dies is restarted like any other.
	victim := before[downID]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill instance %s (pid %d): %v", victim.ID, victim.PID, err)
	}
	eventually(t, 10*time.Second, func() error {
		if err := converged(s.client, "sticky", rel.Number, 2); err != nil {
			return err
		}
		now, err := observe(s.client, "sticky")
		if err != nil {
			return err
		}
		got, ok := now[victim.ID]
		if !ok {
			return fmt.Errorf("instance %s is gone; instances now: %v", victim.ID, slices.Collect(maps.Keys(now)))
		}
		if got.PID == victim.PID || got.Restarts != victim.Restarts+1 {
			return fmt.Errorf("instance %s is pid %d with %d restarts; want a new pid (not %d) and %d restarts",
				victim.ID, got.PID, got.Restarts, victim.PID, victim.Restarts+1)
		}
		var want []int
		for _, in := range now {
			want = append(want, in.PID)
		}
		slices.Sort(want)
		pids := testenv.InstancePIDs(filepath.Clean(s.dataDir) + "/")
		slices.Sort(pids)
		if !slices.Equal(pids, want) {
			return fmt.Errorf("app processes running from the data dir: %v; want exactly the instances' %v", pids, want)
		}
		return nil
	})
}

// observe returns app's instances by id.
func observe(c *client.Client, app string) (map[string]instance.Instance, error) {
	st, err := c.App(context.Background(), app)
	if err != nil {
		return nil, err
	}
	out := map[string]instance.Instance{}
	for _, set := range st.Sets {
		for _, in := range set.Instances {
			out[in.ID] = in
		}
	}
	return out, nil
}

func instancesByID(t testing.TB, c *client.Client, app string) map[string]instance.Instance {
	t.Helper()
	m, err := observe(c, app)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// logTexts reads app's whole log as "<instance> <text>" lines.
func logTexts(c *client.Client, app string) ([]string, error) {
	var out []string
	err := c.Logs(context.Background(), app, client.LogQuery{}, func(l api.LogLine) error {
		out = append(out, l.Instance+" "+l.Text)
		return nil
	})
	return out, err
}

// startTicks reads a process's start time, in clock ticks since boot,
// from /proc/<pid>/stat: with the pid it names one process for good.
func startTicks(t testing.TB, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		t.Fatalf("read start time of pid %d: %v", pid, err)
	}
	// The command name may hold spaces: count fields after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		t.Fatalf("pid %d: no command name in /proc/<pid>/stat %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		t.Fatalf("pid %d: too few fields in /proc/<pid>/stat %q", pid, b)
	}
	// f[0] is field 3; starttime is field 22.
	n, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		t.Fatalf("pid %d: start time %q: %v", pid, f[19], err)
	}
	return n
}

// getURL GETs url directly, not through the edge.
func getURL(url string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	return do(http.DefaultClient, req)
}

// getPath GETs path of host through the edge at addr.
func getPath(addr, host, path string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	return do(http.DefaultClient, req)
}
