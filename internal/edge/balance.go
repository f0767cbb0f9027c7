package edge

import (
	"math/rand/v2"
	"time"
)

// balancer is a route's policy for choosing among its backends.
type balancer uint8

const (
	p2c balancer = iota
	roundRobin
)

// pick chooses a backend of rt for a new request, never except (the
// backend a retry leaves) and never a closed one. Ejected backends sit out
// unless every open backend is ejected: a route that still has backends
// keeps using them rather than answer 503 for all.
//
// Power of two choices (the default) draws two backends at random in
// proportion to weight and takes the one with fewer requests in flight per
// unit of weight: nearly as good as the global least-loaded choice, yet it
// does not send every new request to the same backend when counts are
// stale. Round robin takes the backends in turn, each as many turns in a
// row as its weight.
//
// The counts and flags are read without a lock and may change meanwhile;
// balancing only needs to be right on average, and the caller's acquire
// settles whether the backend may still be used. It returns nil when no
// backend is open.
func (rt *route) pick(except *backend) *backend {
	var now int64
	var healthy, open int64 // total weight of usable backends of each kind
	for i := range rt.targets {
		tg := &rt.targets[i]
		if tg.b == except || tg.b.closed() {
			continue
		}
		open += tg.weight
		if tg.b.health.ejectedUntil.Load() != 0 {
			if now == 0 {
				now = time.Now().UnixNano()
			}
			if tg.b.health.ejected(now) {
				continue
			}
		}
		healthy += tg.weight
	}
	total, skipEjected := healthy, true
	if healthy == 0 {
		total, skipEjected = open, false
	}
	if total == 0 {
		return nil
	}
	usable := func(b *backend) bool {
		return b != except && !b.closed() && !(skipEjected && b.health.ejected(now))
	}
	if rt.balancer == roundRobin {
		return rt.at(int64(rt.turn.Add(1)%uint64(total)), usable, nil)
	}
	a := rt.at(rand.Int64N(total), usable, nil)
	if a == nil {
		return nil
	}
	wa := rt.weightOf(a)
	if total <= wa {
		return a
	}
	b := rt.at(rand.Int64N(total-wa), usable, a)
	if b == nil {
		return a
	}
	wb := rt.weightOf(b)
	// a.load/wa against b.load/wb, without division.
	l, r := a.inflight.Load()*wb, b.inflight.Load()*wa
	switch {
	case l < r:
		return a
	case r < l:
		return b
	}
	// Equal loads, as on an idle route: the first draw wins. It was drawn
	// in proportion to weight, so an idle route spreads requests exactly
	// by weight. Latency is no tie-breaker: a backend that lost on it
	// would get no request to show it got faster, and starve.
	return a
}

// at returns the usable backend (other than skip) whose share of the
// usable weight covers position pos, or the last usable one if flags
// changed since the weights were summed.
func (rt *route) at(pos int64, usable func(*backend) bool, skip *backend) *backend {
	var last *backend
	for i := range rt.targets {
		tg := &rt.targets[i]
		if tg.b == skip || !usable(tg.b) {
			continue
		}
		if pos < tg.weight {
			return tg.b
		}
		pos -= tg.weight
		last = tg.b
	}
	return last
}

func (rt *route) weightOf(b *backend) int64 {
	for i := range rt.targets {
		if rt.targets[i].b == b {
			return rt.targets[i].weight
		}
	}
	return 1
}
