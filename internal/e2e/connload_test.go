package e2e

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// connLoad is load of short exchanges (a connection, one line, closed)
// that workers repeat until stopped.
type connLoad struct {
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	ok       atomic.Int64
	failed   atomic.Int64
	firstErr atomic.Value
}

// startConnLoad runs workers that call exchange until stop, or until
// limit passes, or 20,000 exchanges.
func startConnLoad(workers int, limit time.Duration, exchange func() error) *connLoad {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	l := &connLoad{cancel: cancel}
	var budget atomic.Int64
	budget.Store(20_000)
	for range workers {
		l.wg.Go(func() {
			for ctx.Err() == nil && budget.Add(-1) >= 0 {
				if err := exchange(); err != nil {
					l.failed.Add(1)
					l.firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				l.ok.Add(1)
			}
		})
	}
	return l
}

// stop ends the load and returns how many exchanges succeeded and
// failed, and the first failure.
func (l *connLoad) stop() (ok, failed int64, firstErr any) {
	l.cancel()
	l.wg.Wait()
	return l.ok.Load(), l.failed.Load(), l.firstErr.Load()
}
