package controller

import (
	"cmp"
	"slices"
	"sync"

	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/store"
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
	// ports are each app's forwarded TCP ports as the store last said;
	// tcp are the TCP routes built from them.
	ports   map[string][]store.TCPPort
	tcp     map[string][]edge.TCPRoute
	lastTCP []edge.TCPRoute
}

func newRouteTable(e Edge) *routeTable {
	return &routeTable{edge: e, apps: map[string][]edge.Route{},
		ports: map[string][]store.TCPPort{}, tcp: map[string][]edge.TCPRoute{}}
}

// setPorts records app's forwarded TCP ports, for set to route.
func (t *routeTable) setPorts(app string, ports []store.TCPPort) {
	t.mu.Lock()
	t.ports[app] = ports
	t.mu.Unlock()
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
	t.tcp[app] = tcpRoutes(app, t.ports[app], sets)
	t.mu.Unlock()
}

func (t *routeTable) remove(app string) {
	t.mu.Lock()
	delete(t.apps, app)
	delete(t.ports, app)
	delete(t.tcp, app)
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
	var tcp []edge.TCPRoute
	for _, routes := range t.tcp {
		tcp = append(tcp, routes...)
	}
	slices.SortFunc(tcp, func(a, b edge.TCPRoute) int {
		return cmp.Or(cmp.Compare(a.Port, b.Port), cmp.Compare(a.SNI, b.SNI), cmp.Compare(a.App, b.App))
	})
	if t.gen > 0 && slices.EqualFunc(all, t.last, sameRoute) && slices.EqualFunc(tcp, t.lastTCP, sameTCPRoute) {
		return
	}
	t.gen++
	t.last, t.lastTCP = all, tcp
	t.edge.Apply(&edge.Snapshot{Generation: t.gen, Routes: all, TCP: tcp})
}

func sameRoute(a, b edge.Route) bool {
	return a.Host == b.Host && a.PathPrefix == b.PathPrefix && a.App == b.App && slices.Equal(a.Backends, b.Backends)
}

func sameTCPRoute(a, b edge.TCPRoute) bool {
	return a.Port == b.Port && a.SNI == b.SNI && a.App == b.App && slices.Equal(a.Backends, b.Backends)
}

// tcpRoutes routes each of app's forwarded ports to its ready instances,
// at the address of the port's target: the instance's endpoint for the
// app's own port, or the address its runtime published for another one.
// An instance that published no address for a target gets none of its
// connections.
func tcpRoutes(app string, ports []store.TCPPort, sets []instance.Set) []edge.TCPRoute {
	routes := make([]edge.TCPRoute, 0, len(ports))
	for _, p := range ports {
		r := edge.TCPRoute{Port: p.Port, SNI: p.SNI, App: app}
		for _, set := range sets {
			for _, in := range set.Instances {
				if in.State != instance.Ready {
					continue
				}
				addr := in.Endpoint
				if p.Target != 0 && in.Ports != nil {
					addr = in.Ports[p.Target]
				}
				if addr != "" {
					r.Backends = append(r.Backends, edge.Backend{ID: in.ID, Addr: addr, Release: in.Release, Weight: 1})
				}
			}
		}
		routes = append(routes, r)
	}
	return routes
}
