package controller

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// queuedKeys returns the keys waiting in q, in order.
func (q *queue) queuedKeys() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.order)
}

// awaitQueued polls until q holds want, or fails after a deadline.
func awaitQueued(t *testing.T, q *queue, want []string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !slices.Equal(q.queuedKeys(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("queue = %v after %v, want %v", q.queuedKeys(), within, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestQueueDedup(t *testing.T) {
	q := newQueue()
	for _, k := range []string{"a", "b", "a", "c", "b", "a"} {
		q.Add(k)
	}
	if got := q.queuedKeys(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Fatalf("queue = %v, want each key once in first-added order", got)
	}
	for _, want := range []string{"a", "b", "c"} {
		if k, ok := q.get(); !ok || k != want {
			t.Fatalf("get = %q, %v; want %q", k, ok, want)
		}
	}
	if got := q.queuedKeys(); len(got) != 0 {
		t.Errorf("queue = %v after taking every key", got)
	}
}

func TestQueueAddWhileProcessing(t *testing.T) {
	q := newQueue()
	q.Add("a")
	k, _ := q.get()

	// Added while a is processed: not handed out now, queued once after.
	q.Add("a")
	q.Add("a")
	if got := q.queuedKeys(); len(got) != 0 {
		t.Fatalf("queue = %v while a is processed, want a held back", got)
	}
	q.done(k, nil)
	if got := q.queuedKeys(); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("queue = %v after processing, want [a] once", got)
	}

	// Not added while processing: done leaves nothing behind.
	k, _ = q.get()
	q.done(k, nil)
	if got := q.queuedKeys(); len(got) != 0 {
		t.Errorf("queue = %v, want empty", got)
	}
}

func TestQueueErrorBackoff(t *testing.T) {
	q := newQueue()
	q.Add("a")
	k, _ := q.get()
	start := time.Now()
	q.done(k, errors.New("boom"))
	if got := q.queuedKeys(); len(got) != 0 {
		t.Fatalf("queue = %v right after an error, want the retry to wait", got)
	}
	awaitQueued(t, q, []string{"a"}, 5*time.Second)
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Errorf("retried after %v, want at least 50ms", waited)
	}

	// A second failure waits longer, a success resets the count.
	k, _ = q.get()
	start = time.Now()
	q.done(k, errors.New("boom"))
	awaitQueued(t, q, []string{"a"}, 5*time.Second)
	if waited := time.Since(start); waited < 100*time.Millisecond {
		t.Errorf("second retry after %v, want at least 100ms", waited)
	}
	k, _ = q.get()
	q.done(k, nil)
	q.mu.Lock()
	failures := q.failures["a"]
	q.mu.Unlock()
	if failures != 0 {
		t.Errorf("failures = %d after a success, want 0", failures)
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		failures int
		want     time.Duration
	}{
		{1, 50 * time.Millisecond},
		{2, 100 * time.Millisecond},
		{3, 200 * time.Millisecond},
		{10, 25600 * time.Millisecond},
		{11, 30 * time.Second},
		{1000, 30 * time.Second},
	}
	for _, tc := range tests {
		if got := backoff(tc.failures); got != tc.want {
			t.Errorf("backoff(%d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
}

// TestQueueRunNeverConcurrent runs workers and checks that one key is
// never handled by two at once, that other keys are handled meanwhile, and
// that a key added during its handling is handled once more afterwards.
func TestQueueRunNeverConcurrent(t *testing.T) {
	q := newQueue()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	var mu sync.Mutex
	active, maxActive, calls := 0, 0, 0
	started := make(chan struct{})
	release := make(chan struct{})
	again := make(chan struct{})
	handledB := make(chan struct{})
	handle := func(ctx context.Context, key string) error {
		if key == "b" {
			close(handledB)
			return nil
		}
		mu.Lock()
		active++
		maxActive = max(maxActive, active)
		calls++
		n := calls
		mu.Unlock()
		switch n {
		case 1:
			close(started)
			<-release
		case 2:
			close(again)
		}
		mu.Lock()
		active--
		mu.Unlock()
		return nil
	}
	stopped := make(chan struct{})
	go func() {
		q.run(ctx, 4, handle)
		close(stopped)
	}()

	q.Add("a")
	waitFor(t, started, "the first handling of a")
	for range 5 {
		q.Add("a")
	}
	q.Add("b")
	// b is handled by another worker while a's handling still blocks.
	waitFor(t, handledB, "b while a is handled")
	close(release)
	waitFor(t, again, "a second handling of a")

	cancel()
	waitFor(t, stopped, "run to return after cancel")
	mu.Lock()
	defer mu.Unlock()
	if maxActive != 1 {
		t.Errorf("a was handled by %d workers at once", maxActive)
	}
	if calls != 2 {
		t.Errorf("a was handled %d times, want 2 (five adds during one handling make one more)", calls)
	}
}

func waitFor(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

func TestQueueShutdown(t *testing.T) {
	q := newQueue()
	got := make(chan bool)
	go func() {
		_, ok := q.get()
		got <- ok
	}()
	q.shutdown()
	select {
	case ok := <-got:
		if ok {
			t.Error("get returned a key after shutdown")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("get still blocks after shutdown")
	}
	q.Add("a")
	if keys := q.queuedKeys(); len(keys) != 0 {
		t.Errorf("queue took %v after shutdown", keys)
	}
}
