package edge

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// backend is the long-lived state of one instance, kept by ID outside the
// snapshots so that a snapshot swap neither loses its in-flight count nor
// its upstream connections.
//
// A request that chose a backend increments inflight and only then reads
// the two flags; Drain and Apply set a flag and only then read inflight.
// With sequentially consistent atomics one side always sees the other:
// either the request sees the flag and backs off, or the drainer counts
// the request and waits for it. So once a drainer has seen inflight == 0
// after setting its flag, no request can start on the backend any more.
type backend struct {
	id      string
	addr    string
	release int
	h2c     bool

	inflight atomic.Int64
	// draining is set by Drain and never cleared: the caller is about to
	// stop the instance, so even a snapshot that still lists it must not
	// send it new requests.
	draining atomic.Bool
	// removed is set while the backend is absent from the applied
	// snapshot, and cleared when it comes back.
	removed atomic.Bool

	// health is the passive health state: failures seen by requests,
	// and the ejection they led to.
	health health
	// stats are the backend's request figures, for rollout analysis.
	stats stats

	// transport is the backend's own, so that its idle connections can be
	// closed without touching any other backend's.
	transport *http.Transport
	// fast is the fasthttp listener's connection pool to the backend,
	// made on first use (fast_proxy.go).
	fast atomic.Pointer[fastClient]
	// raw is the raw listener's pool of idle connections to the backend,
	// made on first use (raw_proxy.go).
	raw  atomic.Pointer[rawPool]
	pool *pool

	// gone ends when a drain's deadline passed: every request still on
	// the backend, upgraded connections included, is cancelled, so that
	// a WebSocket cannot pin an instance that is about to stop.
	gone   context.Context
	cutOff context.CancelFunc

	// mu guards idle, the channel a waiting Drain sleeps on; it is closed
	// when inflight drops to zero while a flag is set.
	mu   sync.Mutex
	idle chan struct{}
}

// closed reports whether the backend may take no new request.
func (b *backend) closed() bool {
	return b.draining.Load() || b.removed.Load()
}

// acquire counts a request on b, or reports false (having counted
// nothing) when b was closed meanwhile, in which case the caller chooses
// again from the current snapshot.
func (b *backend) acquire() bool {
	b.inflight.Add(1)
	if b.closed() {
		b.done()
		return false
	}
	return true
}

// done ends a request counted by acquire.
func (b *backend) done() {
	if b.inflight.Add(-1) != 0 || !b.closed() {
		return
	}
	b.mu.Lock()
	if b.idle != nil {
		close(b.idle)
		b.idle = nil
	}
	b.mu.Unlock()
	if b.removed.Load() {
		b.pool.dropIfIdle(b)
	}
}

// waitIdle blocks until no request is counted on b, or ctx ends.
func (b *backend) waitIdle(ctx context.Context) error {
	for {
		// The channel is made under mu before inflight is read, and done
		// closes it under mu after inflight reached zero: a wake-up cannot
		// fall between the check and the wait.
		b.mu.Lock()
		if b.inflight.Load() == 0 {
			b.mu.Unlock()
			return nil
		}
		if b.idle == nil {
			b.idle = make(chan struct{})
		}
		idle := b.idle
		b.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// pool holds every backend the edge knows, by ID.
type pool struct {
	// mu guards byID and serialises Apply, so flags and membership change
	// together.
	mu   sync.Mutex
	byID map[string]*backend

	logger    *slog.Logger
	transport func(h2c bool) *http.Transport
	// cooldown and maxCooldown bound a passive-health ejection.
	cooldown, maxCooldown time.Duration
}

func (p *pool) get(id string) *backend {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byID[id]
}

// resolveLocked returns the pool's backend for sb, making one if needed,
// and marks it present again. p.mu must be held.
func (p *pool) resolveLocked(sb Backend) *backend {
	b := p.byID[sb.ID]
	if b != nil && b.addr == sb.Addr && b.h2c == sb.H2C {
		// Cleared before the new table is published, so requests that find
		// the backend in it do not bounce off a stale flag.
		b.removed.Store(false)
		return b
	}
	if b != nil {
		// Same instance id, new address: the old entry keeps serving the
		// requests it has and takes no more.
		p.logger.Warn("backend changed address or protocol; old connections are dropped once idle",
			"backend", sb.ID, "old_addr", b.addr, "addr", sb.Addr, "h2c", sb.H2C)
		p.retireLocked(b)
	}
	b = &backend{id: sb.ID, addr: sb.Addr, release: sb.Release, h2c: sb.H2C, pool: p}
	b.transport = p.transport(sb.H2C)
	b.gone, b.cutOff = context.WithCancel(context.Background())
	p.byID[sb.ID] = b
	return b
}

// sweepLocked marks every backend that t does not use as removed and drops
// those with nothing in flight. It runs after t is published. p.mu must be
// held.
func (p *pool) sweepLocked(t *table) {
	for _, b := range p.byID {
		if _, ok := t.backends[b]; !ok {
			p.retireLocked(b)
		}
	}
}

// retireLocked marks b removed and drops it if it is idle; otherwise the
// last request to finish drops it. p.mu must be held.
func (p *pool) retireLocked(b *backend) {
	b.removed.Store(true)
	if b.inflight.Load() == 0 {
		p.dropLocked(b)
	}
}

// dropIfIdle forgets b once it is removed and idle. Called by the request
// that brought its count to zero, it rechecks under the lock because an
// Apply may have brought the backend back meanwhile.
func (p *pool) dropIfIdle(b *backend) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if b.removed.Load() && b.inflight.Load() == 0 {
		p.dropLocked(b)
	}
}

func (p *pool) dropLocked(b *backend) {
	if p.byID[b.id] == b {
		delete(p.byID, b.id)
	}
	if b.cutOff != nil {
		b.cutOff() // nothing is in flight; this only releases the context
	}
	b.closeIdle()
}

// closeIdle closes the backend's idle upstream connections, on both
// listeners' clients, so a drained instance holds none when it is
// signalled.
func (b *backend) closeIdle() {
	b.transport.CloseIdleConnections()
	if fc := b.fast.Load(); fc != nil {
		fc.hc.CloseIdleConnections()
	}
	if rp := b.raw.Load(); rp != nil {
		rp.closeIdle()
	}
}
