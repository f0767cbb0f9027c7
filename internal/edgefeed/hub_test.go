package edgefeed

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/edge"
)

var quiet = slog.New(slog.DiscardHandler)

// follower is an edge that follows h: it records the snapshots it is
// sent; the test acks for it.
func follower(t *testing.T, h *Hub, name string) (got chan *edge.Snapshot, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	got = make(chan *edge.Snapshot, 16)
	done := make(chan error, 1)
	go func() {
		done <- h.Follow(ctx, name, func(s *edge.Snapshot) error { got <- s; return nil })
	}()
	h.Ack(name, Ack{}) // connected: it reported once
	deadline := time.Now().Add(5 * time.Second)
	for !following(h, name) {
		if time.Now().After(deadline) {
			t.Fatalf("%s does not follow after 5s", name)
		}
		time.Sleep(time.Millisecond)
	}
	var once sync.Once
	return got, func() { once.Do(func() { cancel(); <-done }) }
}

// following reports whether the edge called name has a stream open.
func following(h *Hub, name string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	r, ok := h.remotes[name]
	return ok && r.streams > 0
}

// returnsWithin runs f and reports whether it returned within d.
func returnsWithin(d time.Duration, f func()) (chan struct{}, bool) {
	done := make(chan struct{})
	go func() { f(); close(done) }()
	select {
	case <-done:
		return done, true
	case <-time.After(d):
		return done, false
	}
}

func TestApplyWaitsForFollowers(t *testing.T) {
	local := edge.New(edge.Options{Logger: quiet})
	defer local.Close()
	h := NewHub(local, quiet)
	got, stop := follower(t, h, "edge-a")
	defer stop()

	s := &edge.Snapshot{Generation: 7}
	done, early := returnsWithin(200*time.Millisecond, func() { h.Apply(s) })
	if early {
		t.Fatal("Apply returned before the following edge served the snapshot")
	}
	if local.Generation() != 7 {
		t.Errorf("the local edge serves generation %d, want 7", local.Generation())
	}
	if sent := <-got; sent.Generation != 7 {
		t.Fatalf("the edge was sent generation %d", sent.Generation)
	}
	h.Ack("edge-a", Ack{Generation: 7})
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Apply did not return once the edge acknowledged")
	}

	// An edge that stopped following holds nothing up.
	stop()
	if _, ok := returnsWithin(time.Second, func() { h.Apply(&edge.Snapshot{Generation: 8}) }); !ok {
		t.Error("Apply waited for an edge that no longer follows")
	}
	if st := h.Edges(); len(st) != 1 || st[0].Connected || st[0].Generation != 7 {
		t.Errorf("Edges() = %+v, want edge-a disconnected at generation 7", st)
	}
}

func TestDrainWaitsForBusyEdges(t *testing.T) {
	h := NewHub(nil, quiet)
	_, stop := follower(t, h, "edge-a")
	defer stop()
	h.Ack("edge-a", Ack{Generation: 3})
	h.mu.Lock()
	h.snap = &edge.Snapshot{Generation: 3}
	h.mu.Unlock()

	h.Ack("edge-a", Ack{Generation: 3, Busy: []string{"b1"}})
	var err error
	done, early := returnsWithin(200*time.Millisecond, func() { err = h.Drain(context.Background(), "b1") })
	if early {
		t.Fatalf("Drain returned (%v) while the edge still had requests on b1", err)
	}
	h.Ack("edge-a", Ack{Generation: 3})
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Drain did not return once the edge had nothing on b1")
	}
	if err != nil {
		t.Fatalf("Drain: %v", err)
	}

	h.Ack("edge-a", Ack{Generation: 3, Busy: []string{"b2"}})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = h.Drain(ctx, "b2")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "edge-a") {
		t.Errorf("Drain past its deadline = %v, want the deadline and the busy edge's name", err)
	}
}

func TestStatsSumEdges(t *testing.T) {
	h := NewHub(nil, quiet)
	var a, b edge.Stats
	a.Requests, a.Errors = 10, 1
	b.Requests = 5
	h.Ack("edge-a", Ack{Stats: map[string]edge.Stats{"x": a, "y": b}})
	h.Ack("edge-b", Ack{Stats: map[string]edge.Stats{"x": a}})
	if got := h.Stats([]string{"x"}); got.Requests != 20 || got.Errors != 2 {
		t.Errorf("Stats(x) = %d requests, %d errors; want 20 and 2", got.Requests, got.Errors)
	}
	if got := h.Stats([]string{"x", "y", "z"}); got.Requests != 25 {
		t.Errorf("Stats(x, y, z) = %d requests, want 25", got.Requests)
	}
}
