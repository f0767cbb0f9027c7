package docker_test

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/logs"
	"github.com/skiff-sh/skiff/internal/runtime/docker"
	"github.com/skiff-sh/skiff/internal/supervisor"
	"github.com/skiff-sh/skiff/internal/testenv"
)

// supervised starts a supervisor over d whose events go to the returned
// recorder; it is closed when the test ends.
func supervised(t *testing.T, d *docker.Driver, dir string) (*supervisor.Supervisor, *eventLog) {
	t.Helper()
	events := &eventLog{}
	sup, err := supervisor.New(supervisor.Options{
		Driver: d, StateDir: dir, Logger: testLogger(),
		BackoffBase: 50 * time.Millisecond, BackoffMax: 400 * time.Millisecond, StopGrace: time.Second,
		TailLog: logs.TailFile, OnEvent: events.add,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sup.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sup.Close() })
	return sup, events
}

type eventLog struct {
	mu     sync.Mutex
	events []supervisor.Event
}

func (l *eventLog) add(e supervisor.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

// find returns the first event of kind, if any.
func (l *eventLog) find(kind string) (supervisor.Event, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.events {
		if e.Kind == kind {
			return e, true
		}
	}
	return supervisor.Event{}, false
}

// awaitInstance polls the app's only set until check passes on its only
// instance.
func awaitInstance(t *testing.T, sup *supervisor.Supervisor, app string, timeout time.Duration, check func(instance.Instance) error) instance.Instance {
	t.Helper()
	end := time.Now().Add(timeout)
	for {
		err := fmt.Errorf("no set")
		var in instance.Instance
		sets, serr := sup.Sets(context.Background(), app)
		switch {
		case serr != nil:
			err = serr
		case len(sets) == 1 && len(sets[0].Instances) == 1:
			in = sets[0].Instances[0]
			err = check(in)
		}
		if err == nil {
			return in
		}
		if time.Now().After(end) {
			t.Fatalf("instance of %s: %v", app, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPublishedPorts: a template's other ports are published on loopback
// next to its own; the driver reports every one in Handle.Ports, a new
// driver finds them again, and the supervisor passes them to
// instance.Instance, where the controller's TCP routes read them.
func TestPublishedPorts(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	image := testImage(t, e)
	dir := t.TempDir()
	d := newDriver(t, e, dir)
	tm := appTemplate(image, "ports", 1, nil)
	// The app's own port repeated is published once.
	tm.Ports = []int{9090, 8080, 9090}
	h := start(t, d, "ports-1-aaaaa", tm)
	if len(h.Ports) != 2 || h.Ports[8080] != h.Endpoint || !strings.HasPrefix(h.Ports[9090], "127.0.0.1:") || h.Ports[9090] == h.Endpoint {
		t.Fatalf("ports = %v, endpoint %s; want 8080 at the endpoint and 9090 at another loopback address", h.Ports, h.Endpoint)
	}
	hs, err := newDriver(t, e, dir).Recover(context.Background())
	if err != nil || len(hs) != 1 || !maps.Equal(hs[0].Ports, h.Ports) || hs[0].Endpoint != h.Endpoint {
		t.Fatalf("recovered %+v, %v; want ports %v", hs, err, h.Ports)
	}
	if err := d.Stop(context.Background(), h, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := d.Cleanup(context.Background(), h); err != nil {
		t.Fatal(err)
	}

	sdir := t.TempDir()
	sup, _ := supervised(t, newDriver(t, e, sdir), sdir)
	if err := sup.Scale(context.Background(), tm, 1); err != nil {
		t.Fatal(err)
	}
	awaitInstance(t, sup, "ports", 30*time.Second, func(in instance.Instance) error {
		if in.State != instance.Ready {
			return fmt.Errorf("%s: %s", in.State, in.Message)
		}
		if len(in.Ports) != 2 || in.Ports[8080] != in.Endpoint || !strings.HasPrefix(in.Ports[9090], "127.0.0.1:") {
			return fmt.Errorf("ports %v, endpoint %s; want 8080 and 9090 published", in.Ports, in.Endpoint)
		}
		return nil
	})
}

// TestOOMReported: an instance killed for its memory limit is reported
// as such by the supervisor: in its last exit, in its message while it
// waits to restart, and in the exited event.
func TestOOMReported(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	image := testImage(t, e)
	dir := t.TempDir()
	sup, events := supervised(t, newDriver(t, e, dir), dir)
	tm := appTemplate(image, "oom", 1, nil)
	tm.Resources.MemoryBytes = 32 << 20
	if err := sup.Scale(context.Background(), tm, 1); err != nil {
		t.Fatal(err)
	}
	in := awaitInstance(t, sup, "oom", 30*time.Second, func(in instance.Instance) error {
		if in.State != instance.Ready {
			return fmt.Errorf("%s: %s", in.State, in.Message)
		}
		return nil
	})
	go call("GET", in.Endpoint, "/alloc?mb=128", "")
	awaitInstance(t, sup, "oom", 30*time.Second, func(in instance.Instance) error {
		if in.LastExit == nil || !in.LastExit.OOM || in.Restarts == 0 && !strings.Contains(in.Message, "killed: out of memory") {
			return fmt.Errorf("last exit %+v, message %q; want an OOM kill", in.LastExit, in.Message)
		}
		return nil
	})
	ev, ok := events.find(supervisor.EventExited)
	if !ok || ev.Data["oom"] != true || !strings.HasPrefix(ev.Message, "killed: out of memory") || !strings.Contains(ev.Message, "resources.memory") {
		t.Errorf("exited event = %+v, %v; want it to say killed: out of memory, with oom in its data", ev, ok)
	}
}
