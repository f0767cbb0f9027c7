package supervisor_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/runtime/process"
	"github.com/skiff-sh/skiff/internal/runtimetest"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

// The crash tests run a supervisor in a child process (this test binary,
// re-executed), kill it with SIGKILL at a chosen point, then start a new
// supervisor on the same state and check that it converges: every set at
// its size and ready, exactly one process per instance, nothing else
// running for the node, and instances that were wanted kept, not
// restarted.

const (
	envChild  = "SUPERVISOR_TEST_CHILD"
	envDir    = "SUPERVISOR_TEST_DIR"
	envNode   = "SUPERVISOR_TEST_NODE"
	envAppDir = "SUPERVISOR_TEST_APPDIR"
	envOps    = "SUPERVISOR_TEST_OPS"
	envCrash  = "SUPERVISOR_TEST_CRASH_AT"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "1" {
		runChild()
		return
	}
	// Instances whose skiff was killed are re-parented to the nearest
	// subreaper. Being it, this process can reap them when done instead of
	// leaving zombies to an init that may not reap.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	code := m.Run()
	for {
		pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			break
		}
	}
	os.Exit(code)
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

func template(appDir string, release int) instance.Template {
	return instance.Template{App: "web", Release: release, Command: []string{"./testapp"}, Dir: appDir,
		Health: instance.Health{Path: "/healthz", Interval: 50 * time.Millisecond, Timeout: 500 * time.Millisecond}}
}

func open(dir, node string, onEvent func(supervisor.Event)) (*supervisor.Supervisor, *process.Driver, error) {
	d, err := process.New(process.Options{StateDir: dir, NodeID: node, Logger: quietLogger()})
	if err != nil {
		return nil, nil, err
	}
	s, err := supervisor.New(supervisor.Options{Driver: d, StateDir: dir, Logger: quietLogger(), OnEvent: onEvent,
		BackoffBase: 50 * time.Millisecond, BackoffMax: 400 * time.Millisecond, StopGrace: time.Second})
	return s, d, err
}

// runChild is the supervisor that gets killed. It runs the operations in
// $SUPERVISOR_TEST_OPS ("scale:REL:N", "wait:REL:N" for N ready, "remove:REL"
// of the newest instance, "delete:REL", "hold" to print "holding" and
// wait to be killed) and kills itself at $SUPERVISOR_TEST_CRASH_AT.
func runChild() {
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	s, _, err := open(os.Getenv(envDir), os.Getenv(envNode), nil)
	if err != nil {
		fail(err)
	}
	crashAt := os.Getenv(envCrash)
	supervisor.SetCrashHook(s, func(point string) {
		if point == crashAt {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Hour)
		}
	})
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		fail(err)
	}
	appDir := os.Getenv(envAppDir)
	for op := range strings.SplitSeq(os.Getenv(envOps), ",") {
		f := strings.Split(op, ":")
		rel := 0
		if len(f) > 1 {
			rel, _ = strconv.Atoi(f[1])
		}
		switch f[0] {
		case "scale":
			n, _ := strconv.Atoi(f[2])
			err = s.Scale(ctx, template(appDir, rel), n)
		case "wait":
			n, _ := strconv.Atoi(f[2])
			err = awaitReady(s, rel, n, 20*time.Second)
		case "remove":
			sets, _ := s.Sets(ctx, "web")
			for _, set := range sets {
				if set.Release == rel {
					err = s.Remove(ctx, "web", set.Instances[len(set.Instances)-1].ID)
				}
			}
		case "delete":
			err = s.DeleteSet(ctx, "web", rel)
		case "hold":
			fmt.Println("holding")
			time.Sleep(time.Hour)
		}
		if err != nil {
			fail(fmt.Errorf("%s: %w", op, err))
		}
	}
	// Some points are reached by instance goroutines after the last
	// operation returned.
	time.Sleep(10 * time.Second)
	fail(fmt.Errorf("crash point %q never reached", crashAt))
}

func awaitReady(s *supervisor.Supervisor, release, n int, timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for {
		sets, err := s.Sets(context.Background(), "web")
		if err != nil {
			return err
		}
		for _, set := range sets {
			if set.Release == release && len(set.Instances) == n && set.Ready() == n {
				return nil
			}
		}
		if time.Now().After(end) {
			return fmt.Errorf("release %d: not %d ready after %s: %+v", release, n, timeout, sets)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// leaders lists the node's running instance processes by id: every process
// group leader carrying the node, not only the first per id (Recover
// would hide duplicates).
func leaders(t *testing.T, node string) map[string][]int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) < 3 || f[0] == "Z" || f[2] != e.Name() {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		vars := strings.Split(string(env), "\x00")
		if !slices.Contains(vars, "SKIFF_NODE="+node) {
			continue
		}
		for _, v := range vars {
			if id, ok := strings.CutPrefix(v, "SKIFF_INSTANCE="); ok {
				out[id] = append(out[id], pid)
			}
		}
	}
	return out
}

func TestRecoveryAfterKill9(t *testing.T) {
	t.Parallel()
	appDir := runtimetest.BuildTestApp(t)
	tests := []struct {
		name  string
		ops   string
		crash string
		// want is the size of each release after recovery.
		want map[int]int
		// keptRunning: every instance of these releases that ran at the
		// crash must still run with the same pid afterwards.
		keptRunning []int
		// orphans is how many instances recovery must stop.
		orphans int
		// unrecorded: the processes that ran at the crash were never
		// recorded, so recovery cannot tell them from impostors: it must
		// stop every one of them (impostor_stopped) and start anew.
		unrecorded bool
	}{
		{name: "after recording a larger size", ops: "scale:1:2", crash: "scale.persisted", want: map[int]int{1: 2}},
		{name: "after start, before recording it", ops: "scale:1:3", crash: "start.returned", want: map[int]int{1: 3}, unrecorded: true},
		{name: "after recording a smaller size", ops: "scale:1:3,wait:1:3,scale:1:1", crash: "shrink.persisted", want: map[int]int{1: 1}, orphans: 2},
		{name: "after recording a removal", ops: "scale:1:2,wait:1:2,remove:1", crash: "remove.persisted", want: map[int]int{1: 1}, orphans: 1},
		{name: "after recording a deleted set", ops: "scale:1:2,scale:2:1,wait:1:2,wait:2:1,delete:1", crash: "deleteset.persisted",
			want: map[int]int{2: 1}, keptRunning: []int{2}, orphans: 2},
		{name: "in steady state", ops: "scale:1:2,scale:2:1,wait:1:2,wait:2:1,hold", want: map[int]int{1: 2, 2: 1}, keptRunning: []int{1, 2}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			node := fmt.Sprintf("crash-%d-%d-%d", os.Getpid(), i, time.Now().UnixNano())
			t.Cleanup(func() { killNode(t, dir, node) })
			appDir := runtimetest.ReleaseDir(t, appDir)

			runAndKill(t, dir, node, appDir, tt.ops, tt.crash)
			before := leaders(t, node)

			var mu sync.Mutex
			kinds := map[string]int{}
			s, _, err := open(dir, node, func(e supervisor.Event) {
				mu.Lock()
				kinds[e.Kind]++
				mu.Unlock()
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			for rel, n := range tt.want {
				if err := awaitReady(s, rel, n, 20*time.Second); err != nil {
					t.Fatal(err)
				}
			}
			sets, _ := s.Sets(context.Background(), "web")
			if len(sets) != len(tt.want) {
				t.Errorf("sets after recovery = %+v, want releases %v", sets, tt.want)
			}
			// Exactly one process per wanted instance, nothing else.
			var wantIDs []string
			pidOf := map[string]int{}
			for _, set := range sets {
				for _, in := range set.Instances {
					wantIDs = append(wantIDs, in.ID)
					pidOf[in.ID] = in.PID
				}
			}
			var procs map[string][]int
			deadline := time.Now().Add(10 * time.Second)
			for {
				procs = leaders(t, node)
				if len(procs) == len(wantIDs) || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			for _, id := range wantIDs {
				if len(procs[id]) != 1 || procs[id][0] != pidOf[id] {
					t.Errorf("instance %s: processes %v, want exactly its pid %d", id, procs[id], pidOf[id])
				}
			}
			if len(procs) != len(wantIDs) {
				t.Errorf("processes of the node %v, want only instances %v", procs, wantIDs)
			}
			// Wanted instances were adopted, not restarted.
			for _, set := range sets {
				if !slices.Contains(tt.keptRunning, set.Release) {
					continue
				}
				for id, pids := range before {
					if !strings.HasPrefix(id, fmt.Sprintf("web-%d-", set.Release)) {
						continue
					}
					if got := procs[id]; len(got) != 1 || got[0] != pids[0] {
						t.Errorf("instance %s ran as pid %d before the crash, %v after: restarted, not adopted", id, pids[0], got)
					}
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if kinds[supervisor.EventOrphanStopped] != tt.orphans {
				t.Errorf("orphans stopped = %d, want %d (events %v)", kinds[supervisor.EventOrphanStopped], tt.orphans, kinds)
			}
			if tt.unrecorded {
				if len(before) == 0 || kinds[supervisor.EventImpostorStopped] != len(before) {
					t.Errorf("impostors stopped = %d, want every one of the %d unrecorded processes (events %v)",
						kinds[supervisor.EventImpostorStopped], len(before), kinds)
				}
				for id, pids := range before {
					if got := procs[id]; len(got) == 1 && got[0] == pids[0] {
						t.Errorf("instance %s still runs as unrecorded pid %d: adopted without proof", id, pids[0])
					}
				}
			}
		})
	}
}

// runAndKill runs the child supervisor until it dies by SIGKILL: at its
// crash point, or, for "hold", when it says it holds.
func runAndKill(t *testing.T, dir, node, appDir, ops, crash string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=1", envDir+"="+dir, envNode+"="+node, envAppDir+"="+appDir,
		envOps+"="+ops, envCrash+"="+crash)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if sc.Text() == "holding" {
			cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child supervisor did not die by SIGKILL: %v\n%s", err, stderr.String())
	}
}

// killNode stops whatever of node still runs.
func killNode(t *testing.T, dir, node string) {
	d, err := process.New(process.Options{StateDir: dir, NodeID: node, Logger: quietLogger()})
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	hs, _ := d.Recover(context.Background())
	for _, h := range hs {
		_ = d.Stop(context.Background(), h, 0)
	}
}
