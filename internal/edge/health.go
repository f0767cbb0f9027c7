package edge

import (
	"math"
	"sync/atomic"
	"time"
)

// Passive health: what requests see decides whether a backend keeps
// taking them. Readiness probes (the supervisor's) catch an instance that
// is down; these thresholds catch one that fails while it still passes
// its probe, or that died between two probes.
const (
	// connectFailLimit consecutive failed connects eject a backend.
	connectFailLimit = 3
	// errorLimit consecutive 5xx answers or broken responses eject it.
	errorLimit = 5
	// ewmaWeight is how much one response time moves the latency average.
	ewmaWeight = 0.2
)

// health is a backend's passive health state. It lives in the backend,
// so it survives snapshot swaps.
type health struct {
	connectFails atomic.Int32
	errors       atomic.Int32
	// ejections counts ejections since the last success; each one doubles
	// the cool-down.
	ejections atomic.Int32
	// ejectedUntil is the end of the current ejection in Unix
	// nanoseconds, or 0.
	ejectedUntil atomic.Int64
	// latency is the moving average of response-header times, as
	// float64 bits of seconds; 0 until the first response.
	latency atomic.Uint64
}

// ejected reports whether the backend sits out at now (Unix nanoseconds).
func (h *health) ejected(now int64) bool {
	u := h.ejectedUntil.Load()
	return u != 0 && u > now
}

// latencyEWMA returns the moving average of the backend's response-header
// times, or 0 before its first response.
func (b *backend) latencyEWMA() time.Duration {
	return time.Duration(math.Float64frombits(b.health.latency.Load()) * float64(time.Second))
}

// observe records a response with status received after d.
func (b *backend) observe(d time.Duration, status int) {
	b.stats.answered(d, status)
	h := &b.health
	for {
		old := h.latency.Load()
		prev := math.Float64frombits(old)
		next := d.Seconds()
		if old != 0 {
			next = prev + ewmaWeight*(next-prev)
		}
		if h.latency.CompareAndSwap(old, math.Float64bits(next)) {
			break
		}
	}
	h.connectFails.Store(0)
	if status >= 500 {
		if h.errors.Add(1) >= errorLimit {
			b.eject("consecutive 5xx answers")
		}
		return
	}
	h.errors.Store(0)
	if h.recovered() {
		b.pool.logger.Info("backend answers again; back in rotation", "backend", b.id, "addr", b.addr)
	}
}

// recovered ends the ejection record of a backend that just succeeded,
// and reports whether there was one to end.
func (h *health) recovered() bool {
	if h.ejections.Load() == 0 && h.ejectedUntil.Load() == 0 {
		return false
	}
	h.ejections.Store(0)
	h.ejectedUntil.Store(0)
	return true
}

// failed records a request that got no response: connect says whether
// the connection could not even be made.
func (b *backend) failed(connect bool) {
	b.stats.unanswered()
	h := &b.health
	if connect {
		if h.connectFails.Add(1) >= connectFailLimit {
			b.eject("consecutive failed connects")
		}
		return
	}
	if h.errors.Add(1) >= errorLimit {
		b.eject("consecutive failed responses")
	}
}

// eject takes b out of rotation; see health.eject.
func (b *backend) eject(why string) {
	d := b.health.eject(b.pool.cooldown, b.pool.maxCooldown)
	b.pool.logger.Warn("backend ejected", "backend", b.id, "addr", b.addr, "reason", why, "cooldown", d)
}

// eject starts a cool-down that doubles with each ejection since the
// last success, from cooldown up to maxCooldown, and returns its length.
// The counters restart, so a backend back from a cool-down gets the full
// allowance again before the next, longer, ejection.
func (h *health) eject(cooldown, maxCooldown time.Duration) time.Duration {
	h.connectFails.Store(0)
	h.errors.Store(0)
	n := h.ejections.Add(1)
	d := cooldown
	for i := int32(1); i < n && d < maxCooldown; i++ {
		d *= 2
	}
	d = min(d, maxCooldown)
	h.ejectedUntil.Store(time.Now().Add(d).UnixNano())
	return d
}
