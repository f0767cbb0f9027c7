package process

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/runtimetest"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

var (
	appOnce sync.Once
	appDir  string
	appDirs sync.Map
)

// testApp builds the test app once for this package's driver tests, and
// returns the test's own copy of it: a driver running as root hands the
// tree over to the app's user.
func testApp(t *testing.T) string {
	appOnce.Do(func() { appDir = runtimetest.BuildTestApp(&processLifetime{t}) })
	if appDir == "" {
		t.Fatal("test app was not built")
	}
	if dir, ok := appDirs.Load(t.Name()); ok {
		return dir.(string)
	}
	dir, _ := appDirs.LoadOrStore(t.Name(), runtimetest.ReleaseDir(t, appDir))
	return dir.(string)
}

// processLifetime is a testing.TB whose cleanups run when the test binary
// exits (see TestMain), so one build serves every test.
type processLifetime struct{ *testing.T }

var (
	lifetimeMu       sync.Mutex
	lifetimeCleanups []func()
)

func (processLifetime) Cleanup(f func()) {
	lifetimeMu.Lock()
	defer lifetimeMu.Unlock()
	lifetimeCleanups = append(lifetimeCleanups, f)
}

func TestMain(m *testing.M) {
	if os.Getenv("PROCESS_TEST_HELPER") == "start" {
		startAndExit()
		return
	}
	// Instances started by a helper that exited are re-parented to the
	// nearest subreaper; being it, this process reaps them at the end
	// instead of leaving zombies to an init that may not reap. Until then
	// they are not this driver's children all the same.
	_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	code := m.Run()
	for {
		if pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil); pid <= 0 || err != nil {
			break
		}
	}
	lifetimeMu.Lock()
	for _, f := range lifetimeCleanups {
		f()
	}
	lifetimeMu.Unlock()
	os.Exit(code)
}

// startAndExit is the test binary as a short-lived skiff: it starts one
// instance and exits, leaving the instance to be adopted by a driver that
// is not its parent.
func startAndExit() {
	var req struct {
		StateDir, Node, ID string
		Template           instance.Template
	}
	if err := json.Unmarshal([]byte(os.Getenv("PROCESS_TEST_REQUEST")), &req); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	d, err := New(Options{StateDir: req.StateDir, NodeID: req.Node})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	h, err := d.Start(context.Background(), req.ID, req.Template)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	json.NewEncoder(os.Stdout).Encode(h)
	os.Exit(0)
}

// startForeign starts an instance of d's node from another process that
// then exits, so d can only adopt it: it is not d's child.
func startForeign(t *testing.T, d *Driver, id string, env map[string]string) supervisor.Handle {
	t.Helper()
	req, _ := json.Marshal(map[string]any{"StateDir": d.stateDir, "Node": d.nodeID, "ID": id, "Template": appTemplate(t, env)})
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "PROCESS_TEST_HELPER=start", "PROCESS_TEST_REQUEST="+string(req))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("start an instance from another process: %v: %s", err, out)
	}
	var h supervisor.Handle
	if err := json.Unmarshal(out, &h); err != nil {
		t.Fatalf("start an instance from another process: %v: %s", err, out)
	}
	if d.childOf(h) != nil {
		t.Fatal("a foreign instance is the driver's child")
	}
	awaitHTTP(t, h.Endpoint)
	return h
}

// newTestDriver returns a driver on a node of its own; whatever of that
// node still runs is killed when the test ends.
func newTestDriver(t *testing.T, node string) *Driver {
	t.Helper()
	if node == "" {
		node = fmt.Sprintf("drv-%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	d, err := New(Options{StateDir: t.TempDir(), NodeID: node,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))})
	if err != nil {
		t.Fatalf("new driver: %v", err)
	}
	t.Cleanup(func() {
		hs, _ := d.Recover(context.Background())
		for _, h := range hs {
			_ = d.Stop(context.Background(), h, 0)
		}
	})
	return d
}

func appTemplate(t *testing.T, env map[string]string) instance.Template {
	return instance.Template{App: "app", Release: 3, Command: []string{"./testapp"}, Dir: testApp(t), Env: env}
}

// startApp starts the test app and waits until it answers HTTP.
func startApp(t *testing.T, d *Driver, id string, env map[string]string) supervisor.Handle {
	t.Helper()
	h, err := d.Start(context.Background(), id, appTemplate(t, env))
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	awaitHTTP(t, h.Endpoint)
	return h
}

func awaitHTTP(t *testing.T, endpoint string) {
	t.Helper()
	end := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s never answered: %v", endpoint, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func awaitLog(t *testing.T, d *Driver, h supervisor.Handle, want string) string {
	t.Helper()
	end := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(d.LogPath(h))
		if strings.Contains(string(b), want) {
			return string(b)
		}
		if time.Now().After(end) {
			t.Fatalf("log never showed %q: %s", want, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// running tells whether pid runs and is not a zombie.
func running(pid int) bool {
	st, err := readStat(pid)
	return err == nil && !st.zombie()
}

func awaitGone(t *testing.T, pid int) {
	t.Helper()
	end := time.Now().Add(10 * time.Second)
	for running(pid) {
		if time.Now().After(end) {
			t.Fatalf("pid %d still runs", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestStartEnvironmentAndUser(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, "")
	h := startApp(t, d, "app-3-envtt", map[string]string{"GREETING": "hi", "SKIFF_INSTANCE": "forged", "PORT": "1"})
	env, err := readEnviron(h.PID)
	if err != nil {
		t.Fatal(err)
	}
	port := strings.TrimPrefix(h.Endpoint, "127.0.0.1:")
	want := map[string]string{
		"GREETING": "hi", "SKIFF_INSTANCE": "app-3-envtt", "SKIFF_APP": "app", "SKIFF_RELEASE": "3",
		"SKIFF_NODE": d.nodeID, "PORT": port, "HOME": testApp(t), "PATH": basePath, "LANG": "C.UTF-8",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("env %s = %q, want %q", k, env[k], v)
		}
	}
	if p, err := strconv.Atoi(port); err != nil || p <= 0 {
		t.Errorf("endpoint %q has no port", h.Endpoint)
	}
	st, err := readStat(h.PID)
	if err != nil || st.pgrp != h.PID {
		t.Errorf("instance does not lead its own process group: %+v, %v", st, err)
	}
	if h.Ref != startRef(st.startTicks, mustUID(t, h.PID)) || h.StartedAt.IsZero() || time.Since(h.StartedAt) > time.Minute {
		t.Errorf("handle identity = %q %s, want start ticks %d and a recent start", h.Ref, h.StartedAt, st.startTicks)
	}
	fi, err := os.Stat(d.LogPath(h))
	if err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("log file %s: %v, %v; want mode 0640", d.LogPath(h), fi, err)
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", h.PID))
	if os.Geteuid() == 0 {
		// Apps never run as root: by default each runs as a user of its
		// own, with the group of the same number and no other groups.
		uid, ok := d.users.uids["app"]
		if !ok || !IsAppUID(uid) {
			t.Fatalf("app has no user of its own: %v", d.users.uids)
		}
		for _, line := range []string{fmt.Sprintf("Uid:\t%d\t%d\t%d\t%d", uid, uid, uid, uid), fmt.Sprintf("Gid:\t%d\t%d\t%d\t%d", uid, uid, uid, uid), "Groups:\t \n", "NoNewPrivs:\t1"} {
			if !strings.Contains(string(status), line) {
				t.Errorf("instance runs with the wrong identity; want %q in\n%s", line, status)
			}
		}
	} else if !strings.Contains(string(status), fmt.Sprintf("Uid:\t%d\t", os.Geteuid())) {
		t.Errorf("instance does not run as the current user:\n%s", status)
	}
}

// mustUID is the real uid pid runs as.
func mustUID(t *testing.T, pid int) uint32 {
	t.Helper()
	uid, err := processUID(pid)
	if err != nil {
		t.Fatal(err)
	}
	return uid
}

func TestStartPicksFreePortOrUsesGiven(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, "")
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	tm := appTemplate(t, nil)
	tm.Port = port
	h, err := d.Start(context.Background(), "app-3-fixed", tm)
	if err != nil {
		t.Fatal(err)
	}
	if want := "127.0.0.1:" + strconv.Itoa(port); h.Endpoint != want {
		t.Errorf("endpoint = %s, want %s", h.Endpoint, want)
	}
	awaitHTTP(t, h.Endpoint)
}

func TestStartCommandErrors(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, "")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notexec"), []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		command []string
		dir     string
		want    []string
	}{
		{"not in PATH", []string{"no-such-program-xyz"}, dir, []string{`"no-such-program-xyz" not found in PATH`, dir, "./no-such-program-xyz"}},
		{"missing file", []string{"./missing"}, dir, []string{`"./missing" not found`, dir}},
		{"not executable", []string{"./notexec"}, dir, []string{`"./notexec"`, "not executable", dir}},
		{"directory", []string{"./adir"}, dir, []string{`"./adir"`, "is a directory"}},
		{"no release directory", []string{"./x"}, filepath.Join(dir, "nope"), []string{"release directory", "nope"}},
		{"no command", nil, dir, []string{"has no command"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Start(context.Background(), "app-1-bad", instance.Template{App: "app", Release: 1, Command: tt.command, Dir: tt.dir})
			if !errors.Is(err, ErrCommand) {
				t.Fatalf("err = %v, want ErrCommand", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestWaitReportsExitCodeAndKillsLeftovers(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, "")
	h := startApp(t, d, "app-3-exit7", map[string]string{"TESTAPP_CHILD": "1"})
	child := childPID(t, d, h)
	go http.Get("http://" + h.Endpoint + "/exit?code=7")
	exit, err := d.Wait(context.Background(), h)
	if err != nil {
		t.Fatal(err)
	}
	if exit.Code != 7 || exit.Signal != "" || exit.At.IsZero() {
		t.Errorf("exit = %+v, want code 7", exit)
	}
	// The leader's exit ends the instance: its child must not linger.
	awaitGone(t, child)
}

// childPID reads the pid the test app's child reported.
func childPID(t *testing.T, d *Driver, h supervisor.Handle) int {
	t.Helper()
	logs := awaitLog(t, d, h, "child ")
	m := regexp.MustCompile(`child (\d+)`).FindStringSubmatch(logs)
	pid, _ := strconv.Atoi(m[1])
	if !running(pid) {
		t.Fatalf("child %d does not run", pid)
	}
	return pid
}

func TestWaitHonoursContext(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, "")
	handles := map[string]supervisor.Handle{
		"child":   startApp(t, d, "app-3-ctx", nil),
		"adopted": startForeign(t, d, "app-3-ctx2", nil),
	}
	for name, h := range handles {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err := d.Wait(ctx, h)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s: Wait on a running instance with an expiring ctx = %v, want DeadlineExceeded", name, err)
		}
	}
}

func TestStopGraceful(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, "")
	h := startApp(t, d, "app-3-term", map[string]string{"TESTAPP_CHILD": "1"})
	child := childPID(t, d, h)
	if err := d.Stop(context.Background(), h, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	exit, err := d.Wait(context.Background(), h)
	if err != nil || exit.Code != 0 || exit.Signal != "" {
		t.Errorf("exit after SIGTERM = %+v, %v; want code 0", exit, err)
	}
	awaitLog(t, d, h, "got SIGTERM")
	awaitGone(t, child)
	if err := d.Stop(context.Background(), h, time.Second); err != nil {
		t.Errorf("stopping a stopped instance: %v, want nil", err)
	}
}

func TestStopEscalatesToSIGKILL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		adopted bool
	}{{"child", false}, {"adopted", true}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newTestDriver(t, "")
			env := map[string]string{"TESTAPP_MODE": "ignore-term"}
			var h supervisor.Handle
			if tt.adopted {
				h = startForeign(t, d, "app-3-stubborn", env)
			} else {
				h = startApp(t, d, "app-3-stubborn", env)
			}
			awaitLog(t, d, h, "started")
			const grace = 300 * time.Millisecond
			began := time.Now()
			if err := d.Stop(context.Background(), h, grace); err != nil {
				t.Fatal(err)
			}
			if took := time.Since(began); took < grace {
				t.Errorf("Stop took %s, less than the grace %s", took, grace)
			}
			awaitLog(t, d, h, "ignoring SIGTERM")
			awaitGone(t, h.PID)
			if !tt.adopted {
				exit, err := d.Wait(context.Background(), h)
				if err != nil || exit.Signal != "SIGKILL" || exit.Code != -1 {
					t.Errorf("exit = %+v, %v; want killed by SIGKILL", exit, err)
				}
			}
		})
	}
}

func TestRecoverAdoptsThisNodeOnly(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, "")
	a := startForeign(t, d, "app-3-aaaaa", nil)
	b := startForeign(t, d, "app-3-bbbbb", map[string]string{"TESTAPP_CHILD": "1"})
	child := childPID(t, d, b)

	if hs, err := newTestDriver(t, "").Recover(context.Background()); err != nil || len(hs) != 0 {
		t.Errorf("another node recovered %v, %v; want nothing", hs, err)
	}
	other := d
	hs, err := other.Recover(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2 {
		t.Fatalf("recovered %d instances, want 2 (the child in a group is no instance): %+v", len(hs), hs)
	}
	for i, want := range []supervisor.Handle{a, b} {
		got := hs[i]
		if got.ID != want.ID || got.App != want.App || got.Release != want.Release || got.Endpoint != want.Endpoint ||
			got.PID != want.PID || !got.StartedAt.Equal(want.StartedAt) || got.Ref != want.Ref {
			t.Errorf("recovered %+v, want %+v", got, want)
		}
	}
	st, err := other.Stats(context.Background(), hs[0])
	if err != nil || st.MemoryBytes <= 0 {
		t.Errorf("stats of an adopted instance = %+v, %v", st, err)
	}

	// An adopted instance that is killed: Wait sees it end, with an
	// unknown code, and what is left of its group goes with it.
	done := make(chan instance.Exit, 1)
	go func() {
		exit, err := other.Wait(context.Background(), hs[1])
		if err != nil {
			t.Errorf("wait: %v", err)
		}
		done <- exit
	}()
	if err := syscall.Kill(b.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case exit := <-done:
		if exit.Code != -1 {
			t.Errorf("adopted exit code = %d, want -1", exit.Code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wait on an adopted instance did not return after it was killed")
	}
	awaitGone(t, child)

	if err := other.Stop(context.Background(), hs[0], 5*time.Second); err != nil {
		t.Fatal(err)
	}
	awaitGone(t, a.PID)
	if _, err := other.Stats(context.Background(), hs[0]); !errors.Is(err, ErrGone) {
		t.Errorf("stats of a stopped instance = %v, want ErrGone", err)
	}
}

func TestNeverSignalsAReusedPID(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, "")
	// A process that is not an instance stands in for one that took over
	// the pid of an instance that is long gone.
	stranger := exec.Command("sleep", "30")
	if err := stranger.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stranger.Process.Kill(); stranger.Wait() })
	st, err := readStat(stranger.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	stale := []supervisor.Handle{
		{ID: "app-3-stale", PID: stranger.Process.Pid, Ref: startRef(st.startTicks-1, mustUID(t, stranger.Process.Pid)), StartedAt: time.Now()},
		{ID: "app-3-stale", PID: stranger.Process.Pid, StartedAt: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)},
	}
	for _, h := range stale {
		if err := d.Stop(context.Background(), h, 0); err != nil {
			t.Errorf("stop of a gone instance = %v, want nil", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if _, err := d.Wait(ctx, h); err != nil {
			t.Errorf("wait on a gone instance = %v, want an immediate exit", err)
		}
		cancel()
		if _, err := d.Stats(context.Background(), h); !errors.Is(err, ErrGone) {
			t.Errorf("stats of a gone instance = %v, want ErrGone", err)
		}
	}
	if !running(stranger.Process.Pid) {
		t.Fatal("the driver signalled a process that is not its instance")
	}
}

func TestStatsSumsTheProcessGroup(t *testing.T) {
	t.Parallel()
	d := newTestDriver(t, "")
	h := startApp(t, d, "app-3-stats", map[string]string{"TESTAPP_CHILD": "1", "TESTAPP_BURN": "400ms"})
	childPID(t, d, h)
	end := time.Now().Add(15 * time.Second)
	for {
		s, err := d.Stats(context.Background(), h)
		if err != nil {
			t.Fatal(err)
		}
		leader, err := readStat(h.PID)
		if err != nil {
			t.Fatal(err)
		}
		own := float64(leader.utime+leader.stime) / clockTicks
		// The child burns the CPU; only a sum over the group sees it.
		if s.CPUSeconds >= 0.2 && s.CPUSeconds > own+0.1 && s.MemoryBytes > 1<<20 {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("stats = %+v (leader alone %.2fs); want the child's CPU time included and some memory", s, own)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		want    procStat
		wantErr bool
	}{
		{
			name: "plain",
			text: "42 (testapp) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 5 0 12345 1000000 250 18446744073709551615",
			want: procStat{pid: 42, state: 'S', ppid: 1, pgrp: 42, utime: 7, stime: 3, startTicks: 12345, rssPages: 250},
		},
		{
			name: "command with spaces and parentheses",
			text: "7 (a) b (c)) Z 3 5 5 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0 99 0 0 0",
			want: procStat{pid: 7, state: 'Z', ppid: 3, pgrp: 5, utime: 1, stime: 2, startTicks: 99},
		},
		{name: "truncated", text: "7 (x) S 1 2", wantErr: true},
		{name: "no command", text: "7 x S", wantErr: true},
		{name: "garbage number", text: "7 (x) S 1 2 2 0 -1 0 0 0 0 0 a 2 0 0 20 0 1 0 99 0 0 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pid, _ := strconv.Atoi(strings.Fields(tt.text)[0])
			got, err := parseStat(pid, []byte(tt.text))
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, want error %v", err, tt.wantErr)
			}
			if !tt.wantErr && got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		want string
	}{
		{"no state dir", Options{NodeID: "n"}, "StateDir"},
		{"no node", Options{StateDir: t.TempDir()}, "NodeID"},
		{"node unfit for a path", Options{StateDir: t.TempDir(), NodeID: "../x"}, "NodeID"},
		{"unknown user", Options{StateDir: t.TempDir(), NodeID: "n", User: "no-such-user-xyz"}, "no-such-user-xyz"},
		{"root", Options{StateDir: t.TempDir(), NodeID: "n", User: "root"}, "root"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if !errors.Is(err, ErrBadOptions) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrBadOptions mentioning %q", err, tt.want)
			}
		})
	}
}
