// Package edgefeed carries route snapshots from the control plane to
// edges running as processes of their own (`skiff edge`), and their
// acknowledgements back, so that the data plane outlives the control
// plane: such an edge keeps serving its last routes while `skiff server`
// restarts, and picks up the new ones when it is back.
//
// The control plane's side is the Hub: the controller's Edge, in front of
// the in-process edge (if any) and every edge that follows it. Apply
// returns once every connected edge serves the snapshot (or a timeout
// passed); Drain waits until none has requests in flight on the backend;
// Stats sums what each reports. The edge's side is Follow, which applies
// each snapshot it is sent and reports, every moment something changed,
// the generation it serves, the backends that left its routes but are
// still busy, and its per-backend request figures.
//
// An edge that finds some backends itself (on Kubernetes, from
// EndpointSlices) follows through Discovering, which serves each snapshot
// with the backends of its discovered releases replaced by what a Finder
// lists (Resolve), and serves it again at the same generation whenever
// the list changes.
package edgefeed

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/internal/edge"
)

// Ack is what an edge reports to the control plane.
type Ack struct {
	// Generation is the route snapshot the edge serves.
	Generation uint64 `json:"generation"`
	// Busy lists backends that left the routes but still have requests
	// in flight on this edge.
	Busy []string `json:"busy,omitempty"`
	// Stats are the edge's cumulative request figures per backend.
	Stats map[string]edge.Stats `json:"stats,omitempty"`
}

// EdgeStatus is one following edge as the control plane sees it.
type EdgeStatus struct {
	Name       string    `json:"name"`
	Connected  bool      `json:"connected"`
	Generation uint64    `json:"generation"`
	Busy       []string  `json:"busy,omitempty"`
	LastSeen   time.Time `json:"last_seen"`
}

// Timing of the feed.
const (
	// ackTimeout bounds how long Apply waits for edges to serve a
	// snapshot; a slower edge is reported, not waited for.
	ackTimeout = 5 * time.Second
	// liveFor is how long after its last ack an edge with an open stream
	// counts as connected; Follow acks at least every second.
	liveFor = 5 * time.Second
)

// Hub is the control plane's end of the feed.
type Hub struct {
	local *edge.Edge
	log   *slog.Logger

	mu      sync.Mutex
	snap    *edge.Snapshot
	changed chan struct{} // closed and replaced on every change
	remotes map[string]*remote
}

type remote struct {
	streams int
	ack     Ack
	seen    time.Time
}

// NewHub returns a hub in front of local, the in-process edge, which may
// be nil when only edge processes serve.
func NewHub(local *edge.Edge, log *slog.Logger) *Hub {
	if log == nil {
		log = slog.Default()
	}
	return &Hub{local: local, log: log.With("component", "edgefeed"), changed: make(chan struct{}), remotes: map[string]*remote{}}
}

// changedLocked wakes every waiter. h.mu must be held.
func (h *Hub) changedLocked() {
	close(h.changed)
	h.changed = make(chan struct{})
}

// connectedLocked lists the edges that follow now. h.mu must be held.
func (h *Hub) connectedLocked() map[string]*remote {
	out := map[string]*remote{}
	for name, r := range h.remotes {
		if r.streams > 0 && time.Since(r.seen) < liveFor {
			out[name] = r
		}
	}
	return out
}

// await blocks until cond (called with h.mu held) holds, or ctx ends.
func (h *Hub) await(ctx context.Context, cond func() bool) error {
	for {
		h.mu.Lock()
		ok, ch := cond(), h.changed
		h.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second): // an edge may stop counting as connected
		}
	}
}

// Apply serves s on the local edge and sends it to every following edge,
// returning once each connected one serves it, or after ackTimeout.
func (h *Hub) Apply(s *edge.Snapshot) {
	if h.local != nil {
		h.local.Apply(s)
	}
	h.mu.Lock()
	h.snap = s
	h.changedLocked()
	h.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), ackTimeout)
	defer cancel()
	var lagging []string
	err := h.await(ctx, func() bool {
		lagging = lagging[:0]
		for name, r := range h.connectedLocked() {
			if r.ack.Generation < s.Generation {
				lagging = append(lagging, name)
			}
		}
		return len(lagging) == 0
	})
	if err != nil {
		sort.Strings(lagging)
		h.log.Warn("edges did not confirm a route snapshot in time", "generation", s.Generation, "edges", lagging, "waited", ackTimeout)
	}
}

// Drain waits until no edge, local or following, has a request in flight
// on the backend, or ctx ends.
func (h *Hub) Drain(ctx context.Context, id string) error {
	var errs []error
	if h.local != nil {
		errs = append(errs, h.local.Drain(ctx, id))
	}
	var busy []string
	err := h.await(ctx, func() bool {
		busy = busy[:0]
		gen := uint64(0)
		if h.snap != nil {
			gen = h.snap.Generation
		}
		for name, r := range h.connectedLocked() {
			if r.ack.Generation < gen || slices.Contains(r.ack.Busy, id) {
				busy = append(busy, name)
			}
		}
		return len(busy) == 0
	})
	if err != nil {
		errs = append(errs, fmt.Errorf("drain backend %s on edges %v: %w", id, busy, err))
	}
	return errors.Join(errs...)
}

// Stats sums the backends' figures over the local edge and every edge
// that reported them.
func (h *Hub) Stats(ids []string) edge.Stats {
	var sum edge.Stats
	if h.local != nil {
		sum = h.local.Stats(ids)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.remotes {
		for _, id := range ids {
			sum = sum.Add(r.ack.Stats[id])
		}
	}
	return sum
}

// Follow streams snapshots to the edge called name through send: the
// current one at once, then each new one, until ctx ends or send fails.
func (h *Hub) Follow(ctx context.Context, name string, send func(*edge.Snapshot) error) error {
	h.mu.Lock()
	r := h.remoteLocked(name)
	r.streams++
	h.changedLocked()
	h.mu.Unlock()
	h.log.Info("edge follows", "edge", name)
	defer func() {
		h.mu.Lock()
		r.streams--
		h.changedLocked()
		h.mu.Unlock()
		h.log.Info("edge stopped following", "edge", name)
	}()
	var sent *edge.Snapshot
	for {
		h.mu.Lock()
		s, ch := h.snap, h.changed
		h.mu.Unlock()
		if s != nil && s != sent {
			if err := send(s); err != nil {
				return err
			}
			sent = s
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil
		}
	}
}

// Ack records what the edge called name reported.
func (h *Hub) Ack(name string, a Ack) {
	h.mu.Lock()
	defer h.mu.Unlock()
	r := h.remoteLocked(name)
	r.ack, r.seen = a, time.Now()
	h.changedLocked()
}

func (h *Hub) remoteLocked(name string) *remote {
	r, ok := h.remotes[name]
	if !ok {
		r = &remote{}
		h.remotes[name] = r
	}
	return r
}

// Edges reports every edge that ever followed, by name.
func (h *Hub) Edges() []EdgeStatus {
	h.mu.Lock()
	defer h.mu.Unlock()
	live := h.connectedLocked()
	out := make([]EdgeStatus, 0, len(h.remotes))
	for name, r := range h.remotes {
		_, connected := live[name]
		out = append(out, EdgeStatus{Name: name, Connected: connected, Generation: r.ack.Generation,
			Busy: slices.Clone(r.ack.Busy), LastSeen: r.seen})
	}
	slices.SortFunc(out, func(a, b EdgeStatus) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}
