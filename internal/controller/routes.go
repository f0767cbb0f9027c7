package controller

import (
	"cmp"
	"slices"
	"sync"
	"time"

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
	// routing is how each app was last asked to be routed, so that a
	// change of its instances alone (refresh) keeps it.
	routing map[string]routing
	// gen is the last generation published. It starts from the clock,
	// so that a restarted control plane's snapshots are newer than the
	// ones edge processes kept serving meanwhile.
	gen       uint64
	published bool
	last      []edge.Route
	// ports are each app's forwarded TCP ports as the store last said;
	// tcp are the TCP routes built from them.
	ports   map[string][]store.TCPPort
	tcp     map[string][]edge.TCPRoute
	lastTCP []edge.TCPRoute
}

func newRouteTable(e Edge) *routeTable {
	return &routeTable{edge: e, apps: map[string][]edge.Route{}, routing: map[string]routing{}, gen: uint64(time.Now().UnixNano()),
		ports: map[string][]store.TCPPort{}, tcp: map[string][]edge.TCPRoute{}}
}

// setPorts records app's forwarded TCP ports, for set to route.
func (t *routeTable) setPorts(app string, ports []store.TCPPort) {
	t.mu.Lock()
	t.ports[app] = ports
	t.mu.Unlock()
}

// routing is how an app's requests are to be routed.
type routing struct {
	hosts []string
	// weights maps a release to its share of the requests; nil sends
	// them to every ready instance alike. A release it does not list gets
	// none.
	weights map[int]int
	// sticky pins clients to their release while weights split them.
	sticky bool
	// preview maps extra hosts to the one release each reaches.
	preview map[string]int
	// From the spec's http block.
	balance string
	maxBody int64
	h2c     bool
}

// set records app's routes: every host to the ready instances of its
// sets (draining ones excluded), split by r's weights.
func (t *routeTable) set(app string, r routing, sets []instance.Set) {
	byRelease := map[int][]edge.Backend{}
	var all []edge.Backend
	for _, set := range sets {
		for _, in := range set.Instances {
			if in.State == instance.Ready {
				b := edge.Backend{ID: in.ID, Addr: in.Endpoint, Release: in.Release, Weight: 1, H2C: r.h2c}
				byRelease[in.Release] = append(byRelease[in.Release], b)
				all = append(all, b)
			}
		}
	}
	discover := discoveries(sets, r.h2c)
	route := func(host string, backends []edge.Backend, disc []edge.Discovery) edge.Route {
		return edge.Route{Host: host, App: app, Backends: backends, Balance: r.balance, MaxBody: r.maxBody, Discover: disc}
	}
	var split []edge.ReleaseWeight
	if r.weights != nil {
		for rel, w := range r.weights {
			split = append(split, edge.ReleaseWeight{Release: rel, Weight: w})
		}
		slices.SortFunc(split, func(a, b edge.ReleaseWeight) int { return cmp.Compare(a.Release, b.Release) })
	}
	routes := make([]edge.Route, 0, len(r.hosts)+len(r.preview))
	for _, h := range r.hosts {
		rt := route(h, all, discover)
		rt.Releases, rt.Sticky = split, r.sticky && len(split) > 1
		routes = append(routes, rt)
	}
	for h, rel := range r.preview {
		var disc []edge.Discovery
		for _, d := range discover {
			if d.Release == rel {
				disc = append(disc, d)
			}
		}
		routes = append(routes, route(h, byRelease[rel], disc))
	}
	t.mu.Lock()
	t.apps[app] = routes
	t.routing[app] = r
	t.tcp[app] = tcpRoutes(app, t.ports[app], sets, r.weights)
	t.mu.Unlock()
}

// refresh routes app's instances as sets says, the way it was last set.
func (t *routeTable) refresh(app string, sets []instance.Set) {
	t.mu.Lock()
	r := t.routing[app]
	t.mu.Unlock()
	t.set(app, r, sets)
}

func (t *routeTable) remove(app string) {
	t.mu.Lock()
	delete(t.apps, app)
	delete(t.routing, app)
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
	if t.published && slices.EqualFunc(all, t.last, sameRoute) && slices.EqualFunc(tcp, t.lastTCP, sameTCPRoute) {
		return
	}
	t.gen++
	t.published = true
	t.last, t.lastTCP = all, tcp
	t.edge.Apply(&edge.Snapshot{Generation: t.gen, Routes: all, TCP: tcp})
}

func sameRoute(a, b edge.Route) bool {
	return a.Host == b.Host && a.PathPrefix == b.PathPrefix && a.App == b.App && slices.Equal(a.Backends, b.Backends) &&
		slices.Equal(a.Releases, b.Releases) && a.Sticky == b.Sticky && a.Balance == b.Balance && a.MaxBody == b.MaxBody &&
		slices.EqualFunc(a.Discover, b.Discover, sameDiscovery)
}

func sameTCPRoute(a, b edge.TCPRoute) bool {
	return a.Port == b.Port && a.SNI == b.SNI && a.App == b.App && slices.Equal(a.Backends, b.Backends) &&
		slices.EqualFunc(a.Discover, b.Discover, sameDiscovery)
}

func sameDiscovery(a, b edge.Discovery) bool {
	return a.Release == b.Release && a.Service == b.Service && a.Port == b.Port && a.H2C == b.H2C &&
		slices.Equal(a.Exclude, b.Exclude)
}

// discoveries tells edges where to find the ready instances of each set
// its runtime publishes (on Kubernetes, a release's Service), and which
// of them not to route whatever that list says: every instance the
// runtime reports neither ready nor starting. A starting one is left to
// the list, which shows it once it is ready, so an edge following the
// list while the control plane is away picks it up.
func discoveries(sets []instance.Set, h2c bool) []edge.Discovery {
	var out []edge.Discovery
	for _, set := range sets {
		if set.Published == nil {
			continue
		}
		d := edge.Discovery{Release: set.Release, Service: set.Published.Service, Port: set.Published.Port, H2C: h2c}
		for _, in := range set.Instances {
			if in.State != instance.Ready && in.State != instance.Starting {
				d.Exclude = append(d.Exclude, in.ID)
			}
		}
		slices.Sort(d.Exclude)
		out = append(out, d)
	}
	return out
}

// tcpRoutes routes each of app's forwarded ports to its ready instances,
// at the address of the port's target: the instance's endpoint for the
// app's own port, or the address its runtime published for another one.
// An instance that published no address for a target gets none of its
// connections, and so does one of a release weights gives no share (when
// weights split the app's traffic).
func tcpRoutes(app string, ports []store.TCPPort, sets []instance.Set, weights map[int]int) []edge.TCPRoute {
	routes := make([]edge.TCPRoute, 0, len(ports))
	for _, p := range ports {
		r := edge.TCPRoute{Port: p.Port, SNI: p.SNI, App: app}
		for _, d := range discoveries(sets, false) {
			if weights != nil && weights[d.Release] == 0 {
				continue
			}
			if p.Target != 0 {
				d.Port = p.Target
			}
			r.Discover = append(r.Discover, d)
		}
		for _, set := range sets {
			for _, in := range set.Instances {
				if in.State != instance.Ready || weights != nil && weights[in.Release] == 0 {
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
