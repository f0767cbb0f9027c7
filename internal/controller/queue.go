package controller

import (
	"context"
	"sync"
	"time"
)

// queue is a deduplicating work queue, after client-go's workqueue: a key
// added while queued is queued once; a key added while being processed is
// processed again afterwards, never by two workers at once.
type queue struct {
	mu         sync.Mutex
	cond       *sync.Cond
	order      []string
	queued     map[string]bool
	processing map[string]bool
	dirty      map[string]bool
	failures   map[string]int
	closed     bool
}

func newQueue() *queue {
	q := &queue{queued: map[string]bool{}, processing: map[string]bool{}, dirty: map[string]bool{}, failures: map[string]int{}}
	q.cond = sync.NewCond(&q.mu)
	return q
}

// Add queues key.
func (q *queue) Add(key string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	if q.processing[key] {
		q.dirty[key] = true
		return
	}
	if !q.queued[key] {
		q.queued[key] = true
		q.order = append(q.order, key)
		q.cond.Signal()
	}
}

// AddAfter queues key once d has passed.
func (q *queue) AddAfter(key string, d time.Duration) {
	time.AfterFunc(d, func() { q.Add(key) })
}

// get blocks for the next key; ok is false once the queue is shut down.
func (q *queue) get() (string, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.order) == 0 && !q.closed {
		q.cond.Wait()
	}
	if q.closed {
		return "", false
	}
	key := q.order[0]
	q.order = q.order[1:]
	delete(q.queued, key)
	q.processing[key] = true
	return key, true
}

// done ends processing of key; err != nil requeues it with backoff.
func (q *queue) done(key string, err error) {
	q.mu.Lock()
	delete(q.processing, key)
	again := q.dirty[key]
	delete(q.dirty, key)
	var delay time.Duration
	if err != nil {
		q.failures[key]++
		delay = backoff(q.failures[key])
	} else {
		delete(q.failures, key)
	}
	q.mu.Unlock()
	switch {
	case err != nil:
		q.AddAfter(key, delay)
	case again:
		q.Add(key)
	}
}

// backoff is 50ms doubling per failure, capped at 30s.
func backoff(failures int) time.Duration {
	d := 50 * time.Millisecond
	for i := 1; i < failures && d < 30*time.Second; i++ {
		d *= 2
	}
	return min(d, 30*time.Second)
}

func (q *queue) shutdown() {
	q.mu.Lock()
	q.closed = true
	q.cond.Broadcast()
	q.mu.Unlock()
}

// run feeds keys to handle with n workers until ctx ends.
func (q *queue) run(ctx context.Context, n int, handle func(context.Context, string) error) {
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			for {
				key, ok := q.get()
				if !ok {
					return
				}
				q.done(key, handle(ctx, key))
			}
		})
	}
	<-ctx.Done()
	q.shutdown()
	wg.Wait()
}
