package edgefeed

import (
	"context"
	"net"
	"slices"
	"strconv"
	"sync"

	"github.com/skiff-sh/skiff/internal/edge"
)

// Endpoint is one ready instance an edge found itself.
type Endpoint struct {
	// ID is the instance's ID, the same as the control plane's (on
	// Kubernetes, the pod's name), so in-flight counts, busy reports
	// and drains refer to one backend whichever side named it.
	ID string
	// IP is the instance's address, without a port.
	IP string
}

// Finder lists the ready instances of a published set (edge.Discovery)
// for an edge that follows them itself (on Kubernetes, from the
// EndpointSlices it watches).
type Finder interface {
	// Ready returns the ready endpoints listed for service, and false
	// when nothing is listed for it (not yet, or not watched): then the
	// control plane's backends stand.
	Ready(service string) ([]Endpoint, bool)
}

// Resolve returns s with the backends of every release that a route
// discovers replaced by what f lists for it, less the route's
// exclusions. s itself is left as it is.
func Resolve(s *edge.Snapshot, f Finder) *edge.Snapshot {
	out := *s
	out.Routes = slices.Clone(s.Routes)
	for i := range out.Routes {
		rt := &out.Routes[i]
		rt.Backends = resolveBackends(rt.Backends, rt.Discover, f)
	}
	out.TCP = slices.Clone(s.TCP)
	for i := range out.TCP {
		rt := &out.TCP[i]
		rt.Backends = resolveBackends(rt.Backends, rt.Discover, f)
	}
	return &out
}

func resolveBackends(backends []edge.Backend, discover []edge.Discovery, f Finder) []edge.Backend {
	if len(discover) == 0 {
		return backends
	}
	out := slices.Clone(backends)
	for _, d := range discover {
		eps, ok := f.Ready(d.Service)
		if !ok {
			continue
		}
		out = slices.DeleteFunc(out, func(b edge.Backend) bool { return b.Release == d.Release })
		for _, ep := range eps {
			if slices.Contains(d.Exclude, ep.ID) {
				continue
			}
			out = append(out, edge.Backend{ID: ep.ID, Addr: net.JoinHostPort(ep.IP, strconv.Itoa(d.Port)),
				Release: d.Release, Weight: 1, H2C: d.H2C})
		}
	}
	return out
}

// Target is what Follow keeps serving the control plane's routes: an
// edge (*edge.Edge), or one that finds backends itself (Discovering).
type Target interface {
	Apply(*edge.Snapshot)
	Generation() uint64
	Busy() []string
	BackendStats() map[string]edge.Stats
}

var (
	_ Target = (*edge.Edge)(nil)
	_ Target = (*Discovering)(nil)
)

// Discovering is an edge that takes the backends of discovered releases
// from a Finder: it serves the control plane's last snapshot resolved
// against what the finder lists now, and serves it again, at the same
// generation, whenever Refresh says the list changed, also while the
// control plane is away. Keeping the generation keeps the feed's acks
// meaningful: the edge still serves that snapshot of routes, with the
// backends the cluster reports for it.
type Discovering struct {
	*edge.Edge
	find Finder

	mu   sync.Mutex // orders applies, so an older snapshot never follows a newer one
	last *edge.Snapshot
}

// NewDiscovering wraps e so it finds discovered backends through f.
func NewDiscovering(e *edge.Edge, f Finder) *Discovering {
	return &Discovering{Edge: e, find: f}
}

// Apply serves s with the backends f lists.
func (d *Discovering) Apply(s *edge.Snapshot) {
	if s == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last != nil && s.Generation < d.last.Generation {
		return // the edge would ignore it too
	}
	d.last = s
	d.Edge.Apply(Resolve(s, d.find))
}

// Refresh serves the last snapshot again with the backends f lists now.
func (d *Discovering) Refresh() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.last != nil {
		d.Edge.Apply(Resolve(d.last, d.find))
	}
}

// RefreshOn calls Refresh on every receive from changed, until ctx ends.
func (d *Discovering) RefreshOn(ctx context.Context, changed <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
			d.Refresh()
		}
	}
}
