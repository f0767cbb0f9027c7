package edge

// Busy lists the backends that left the routes (or are draining) but
// still have requests in flight: a control plane in another process
// waits for them to go before it stops their instances.
func (e *Edge) Busy() []string {
	e.pool.mu.Lock()
	defer e.pool.mu.Unlock()
	var ids []string
	for id, b := range e.pool.byID {
		if b.closed() && b.inflight.Load() > 0 {
			ids = append(ids, id)
		}
	}
	return ids
}

// BackendStats returns the request figures of every backend that has
// answered any, by ID, for a control plane in another process to judge
// rollouts by.
func (e *Edge) BackendStats() map[string]Stats {
	e.pool.mu.Lock()
	defer e.pool.mu.Unlock()
	out := map[string]Stats{}
	for id, b := range e.pool.byID {
		if s := b.stats.read(); s.Requests > 0 {
			out[id] = s
		}
	}
	return out
}
