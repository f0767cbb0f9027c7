package edge

import "math/rand/v2"

// pick chooses the backend of rt with the fewest requests in flight per
// unit of weight, skipping closed backends. Ties go to a random one in
// proportion to weight, so that an idle edge still spreads requests. It
// returns nil when no backend is open.
//
// The counts are read without a lock and may be stale by the time the
// request is counted; least-in-flight only needs to be right on average.
func (rt *route) pick() *backend {
	var (
		best                  *backend
		bestLoad, bestW, tieW int64
	)
	for i := range rt.targets {
		tg := &rt.targets[i]
		if tg.b.closed() {
			continue
		}
		load := tg.b.inflight.Load()
		if best == nil {
			best, bestLoad, bestW, tieW = tg.b, load, tg.weight, tg.weight
			continue
		}
		// load/weight < bestLoad/bestW, without division.
		l, r := load*bestW, bestLoad*tg.weight
		switch {
		case l < r:
			best, bestLoad, bestW, tieW = tg.b, load, tg.weight, tg.weight
		case l == r:
			// Weighted reservoir sampling over the tied backends: each
			// ends up chosen with probability weight / total tied weight.
			tieW += tg.weight
			if rand.Int64N(tieW) < tg.weight {
				best, bestLoad, bestW = tg.b, load, tg.weight
			}
		}
	}
	return best
}
