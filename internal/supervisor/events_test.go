package supervisor_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/runtime/process"
	"github.com/skiff-sh/skiff/internal/runtimetest"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

// tracker records what the supervisor asks the log collector.
type tracker struct {
	mu      sync.Mutex
	tracked map[string]string
	gone    []string
}

func (tr *tracker) Track(app string, release int, id, path string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.tracked[id] = fmt.Sprintf("%s/%d %s", app, release, path)
}

func (tr *tracker) Untrack(id string) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.gone = append(tr.gone, id)
}

func TestEventsLogsAndWatch(t *testing.T) {
	t.Parallel()
	appDir := runtimetest.BuildTestApp(t)
	dir := t.TempDir()
	node := fmt.Sprintf("events-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() { killNode(t, dir, node) })
	d, err := process.New(process.Options{StateDir: dir, NodeID: node, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var events []supervisor.Event
	tr := &tracker{tracked: map[string]string{}}
	s, err := supervisor.New(supervisor.Options{
		Driver: d, StateDir: dir, Logger: quietLogger(), Logs: tr,
		BackoffBase: 50 * time.Millisecond, BackoffMax: 100 * time.Millisecond, StopGrace: time.Second,
		OnEvent: func(e supervisor.Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		},
		TailLog: func(path string, n int) []string { return []string{"tail of " + path} },
	})
	if err != nil {
		t.Fatal(err)
	}
	watched := make(chan string, 100)
	s.Watch(func(app string) {
		select {
		case watched <- app:
		default:
		}
	})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })

	tm := template(runtimetest.ReleaseDir(t, appDir), 1)
	tm.Env = map[string]string{"TESTAPP_MODE": "crash", "TESTAPP_EXIT_CODE": "4"}
	if err := s.Scale(context.Background(), tm, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case app := <-watched:
		if app != "web" {
			t.Errorf("watch got %q, want web", app)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no watch call after scaling")
	}
	var exited, restarting supervisor.Event
	end := time.Now().Add(20 * time.Second)
	for exited.Kind == "" || restarting.Kind == "" {
		if time.Now().After(end) {
			t.Fatalf("no exit and restart events: %+v", events)
		}
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		for _, e := range events {
			switch e.Kind {
			case supervisor.EventExited:
				exited = e
			case supervisor.EventRestarting:
				restarting = e
			}
		}
		mu.Unlock()
	}
	sets, _ := s.Sets(context.Background(), "web")
	id := sets[0].Instances[0].ID
	logPath := d.LogPath(supervisor.Handle{ID: id})
	if exited.Instance != id || exited.App != "web" || exited.Release != 1 || exited.Data["code"] != 4 ||
		!slices.Equal(exited.Data["log_tail"].([]string), []string{"tail of " + logPath}) {
		t.Errorf("exit event = %+v", exited)
	}
	if ms, _ := restarting.Data["delay_ms"].(int64); ms < 50 || restarting.Data["restarts"] == nil {
		t.Errorf("restart event = %+v, want a delay of at least 50ms and a count", restarting)
	}
	tr.mu.Lock()
	if got := tr.tracked[id]; got != "web/1 "+logPath {
		t.Errorf("tracked %q for %s, want web/1 %s", got, id, logPath)
	}
	tr.mu.Unlock()

	if err := s.DeleteSet(context.Background(), "web", 1); err != nil {
		t.Fatal(err)
	}
	tr.mu.Lock()
	if !slices.Contains(tr.gone, id) {
		t.Errorf("log of %s still tracked after its set was deleted", id)
	}
	tr.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	var kinds []string
	for _, e := range events {
		kinds = append(kinds, e.Kind)
	}
	if !slices.Contains(kinds, supervisor.EventStarted) || kinds[len(kinds)-1] != supervisor.EventStopped {
		t.Errorf("event kinds %s, want started ... stopped", strings.Join(kinds, " "))
	}
}
