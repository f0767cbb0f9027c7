package server

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// underLoad runs fn under light load on host and fails t if any request
// failed meanwhile; it returns what the load saw.
func (e *edgeProbe) underLoad(t *testing.T, host, what string, fn func()) loadResult {
	t.Helper()
	load := e.startLoad(host)
	defer load.stop() // when fn ends t early
	fn()
	res := load.stop()
	t.Logf("%s under load: %s", what, res)
	if res.failed > 0 {
		t.Errorf("%d of %d requests failed during the %s: %v", res.failed, res.total, what, res.errors)
	}
	return res
}

// loadRun is light load on one host: two clients, a request each every
// 10ms, bounded in count and time, counting who answered and what failed.
type loadRun struct {
	cancel context.CancelFunc
	start  time.Time
	wg     sync.WaitGroup
	mu     sync.Mutex
	res    loadResult
}

type loadResult struct {
	total, failed int
	byRelease     map[int]int
	errors        []string // the first few
	took          time.Duration
}

func (r loadResult) String() string {
	return fmt.Sprintf("%d requests in %s, %d failed, answers by release %v", r.total, r.took.Round(time.Millisecond), r.failed, r.byRelease)
}

func (e *edgeProbe) startLoad(host string) *loadRun {
	const (
		clients  = 2
		perEach  = 20000
		interval = 10 * time.Millisecond
		bound    = 3 * time.Minute
	)
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	l := &loadRun{cancel: cancel, start: time.Now(), res: loadResult{byRelease: map[int]int{}}}
	for range clients {
		l.wg.Go(func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for range perEach {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				a, err := e.get(host)
				l.mu.Lock()
				l.res.total++
				if rel, _, ok := parseAnswer(a); err == nil && ok {
					l.res.byRelease[rel]++
				} else {
					l.res.failed++
					if len(l.res.errors) < 5 {
						l.res.errors = append(l.res.errors, fmt.Sprintf("%v %q", err, a))
					}
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

// stop ends the load and returns what it saw.
func (l *loadRun) stop() loadResult {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.res.took = time.Since(l.start)
	return l.res
}
