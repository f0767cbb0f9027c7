package controller

import (
	"slices"
	"sync"

	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/instance"
)

// routeTable holds each app's routes as last observed and publishes them
// to the edge as one immutable snapshot. A snapshot is applied only when
// it differs from the last one, and Apply returning means the edge serves
// it.
type routeTable struct {
	edge Edge

	mu   sync.Mutex
	apps map[string][]edge.Route
	gen  uint64
	last []edge.Route
}

func newRouteTable(e Edge) *routeTable {
	return &routeTable{edge: e, apps: map[string][]edge.Route{}}
}

// set records app's routes: every host to the ready instances of every
// set, draining ones excluded.
func (t *routeTable) set(app string, hosts []string, sets []instance.Set) {
	var backends []edge.Backend
	for _, set := range sets {
		for _, in := range set.Instances {
			if in.State == instance.Ready {
				backends = append(backends, edge.Backend{ID: in.ID, Addr: in.Endpoint, Release: in.Release, Weight: 1})
			}
		}
	}
	routes := make([]edge.Route, 0, len(hosts))
	for _, h := range hosts {
		routes = append(routes, edge.Route{Host: h, App: app, Backends: backends})
	}
	t.mu.Lock()
	t.apps[app] = routes
	t.mu.Unlock()
}

func (t *routeTable) remove(app string) {
	t.mu.Lock()
	delete(t.apps, app)
	t.mu.Unlock()
}

// publish applies the current routes if they changed. Holding the lock
// through Apply keeps generations in order.
func (t *routeTable) publish() {
	t.mu.Lock()
	defer t.mu.Unlock()
	var all []edge.Route
	for _, routes := range t.apps {
		all = append(all, routes...)
	}
	slices.SortFunc(all, func(a, b edge.Route) int {
		if a.Host != b.Host {
			if a.Host < b.Host {
				return -1
			}
			return 1
		}
		if a.PathPrefix < b.PathPrefix {
			return -1
		}
		if a.PathPrefix > b.PathPrefix {
			return 1
		}
		return 0
	})
	if t.gen > 0 && slices.EqualFunc(all, t.last, sameRoute) {
		return
	}
	t.gen++
	t.last = all
	t.edge.Apply(&edge.Snapshot{Generation: t.gen, Routes: all})
}

func sameRoute(a, b edge.Route) bool {
	return a.Host == b.Host && a.PathPrefix == b.PathPrefix && a.App == b.App && slices.Equal(a.Backends, b.Backends)
}
