package edgefeed

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/skiff-sh/skiff/internal/edge"
)

// Source is the control plane as an edge process reaches it (the API
// client).
type Source interface {
	// EdgeRoutes streams route snapshots for the edge called name to fn
	// until the stream ends, fn fails or ctx ends.
	EdgeRoutes(ctx context.Context, name string, fn func(*edge.Snapshot) error) error
	// EdgeAck reports what the edge serves.
	EdgeAck(ctx context.Context, name string, a Ack) error
}

// Timing of an edge's side of the feed.
const (
	// ackEvery is how often the edge checks whether it has news for the
	// control plane (a drained backend, new figures); it reports at least
	// every ackAtLeast.
	ackEvery   = 100 * time.Millisecond
	ackAtLeast = time.Second
	// retryMax caps the wait between attempts to reach the control plane.
	retryMax = 5 * time.Second
)

// Follow keeps e serving the control plane's routes until ctx ends: it
// applies each snapshot src sends and reports back. While the control
// plane is unreachable, e keeps serving the last routes it had, and
// Follow tries again with a growing pause.
func Follow(ctx context.Context, src Source, name string, e Target, log *slog.Logger) {
	log = log.With("component", "edgefeed", "edge", name)
	poke := make(chan struct{}, 1)
	go reportLoop(ctx, src, name, e, poke, log)
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		got := false
		err := src.EdgeRoutes(ctx, name, func(s *edge.Snapshot) error {
			e.Apply(s)
			if !got {
				log.Info("following the control plane", "generation", s.Generation)
			}
			got = true
			select {
			case poke <- struct{}{}:
			default:
			}
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		if got {
			wait = 100 * time.Millisecond
		}
		log.Warn("control plane unreachable; serving the last routes", "generation", e.Generation(), "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

// reportLoop acks when the generation served or the busy backends
// changed, on poke, and at least every ackAtLeast.
func reportLoop(ctx context.Context, src Source, name string, e Target, poke <-chan struct{}, log *slog.Logger) {
	t := time.NewTicker(ackEvery)
	defer t.Stop()
	var last Ack
	var lastAt time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-poke:
		case <-t.C:
		}
		a := Ack{Generation: e.Generation(), Busy: e.Busy()}
		slices.Sort(a.Busy)
		if a.Generation == last.Generation && slices.Equal(a.Busy, last.Busy) && time.Since(lastAt) < ackAtLeast {
			continue
		}
		a.Stats = e.BackendStats()
		if a.Generation == last.Generation && slices.Equal(a.Busy, last.Busy) && maps.Equal(a.Stats, last.Stats) && time.Since(lastAt) < 3*ackAtLeast {
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := src.EdgeAck(actx, name, a)
		cancel()
		if err != nil {
			log.Debug("report to the control plane", "err", err)
			continue
		}
		last, lastAt = a, time.Now()
	}
}
