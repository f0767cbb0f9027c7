package edge

import (
	"fmt"
	"iter"
	"math/rand/v2"
	"sort"
	"time"
)

// TCPRoute forwards connections on one of the edge's TCP ports to the
// ready instances of one app: every connection on the port, or (SNI set)
// those whose TLS ClientHello asks for that server name, forwarded still
// encrypted.
type TCPRoute struct {
	// Port is the edge's public port, 1-65535.
	Port int
	// SNI is a server name ("db.example.com") or a wildcard
	// ("*.example.com", any subdomain at any depth, not the suffix
	// itself), matched like Route.Host. "" forwards the whole port; a port
	// has either one route with SNI "" or only routes with names.
	SNI string
	// App names the app, for logs.
	App string
	// Backends are the app's ready instances. Their IDs are shared with
	// HTTP routes: a connection counts as in flight on the same backend
	// state as a request, so Drain waits for it. Addr is where the
	// instance listens for this port, which may differ from its HTTP
	// address.
	Backends []Backend
	// Discover lists releases whose instances an edge may find itself,
	// as Route.Discover; Port is this route's target port.
	Discover []Discovery
}

// tcpTable is the compiled TCP part of a snapshot. It is immutable once
// built.
type tcpTable struct {
	ports map[int]*tcpPort
}

// tcpPort is what one listening port routes to: the whole port to one
// route, or server names to routes.
type tcpPort struct {
	whole *tcpRoute
	// exact maps a canonical server name to its route.
	exact map[string]*tcpRoute
	// wildcard maps a suffix with its leading dot to its route.
	wildcard map[string]*tcpRoute
}

type tcpRoute struct {
	port    int
	sni     string
	app     string
	targets []tcpTarget
}

// tcpTarget is a backend as a TCP route sees it: shared state by ID, but
// its own address for this port.
type tcpTarget struct {
	b      *backend
	addr   string
	weight int64
	// health is the passive health of connects to addr. It is not the
	// backend's own, since an instance's TCP port may refuse while its
	// HTTP port answers; the tcpProxy keeps it across snapshots.
	health *health
}

func emptyTCPTable() *tcpTable {
	return &tcpTable{ports: map[int]*tcpPort{}}
}

// apps lists the apps routed on port, for reports about the port.
func (t *tcpTable) apps(port int) []string {
	tp := t.ports[port]
	if tp == nil {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for rt := range tp.routes() {
		if !seen[rt.app] {
			seen[rt.app] = true
			out = append(out, rt.app)
		}
	}
	sort.Strings(out)
	return out
}

// routes yields every route of the port.
func (tp *tcpPort) routes() iter.Seq[*tcpRoute] {
	return func(yield func(*tcpRoute) bool) {
		if tp.whole != nil && !yield(tp.whole) {
			return
		}
		for _, m := range []map[string]*tcpRoute{tp.exact, tp.wildcard} {
			for _, rt := range m {
				if !yield(rt) {
					return
				}
			}
		}
	}
}

// lookup finds the route of a connection that asked for server name sni
// ("" when it named none): the whole port's route, else the exact name,
// else the longest wildcard suffix.
func (tp *tcpPort) lookup(sni string) *tcpRoute {
	if tp.whole != nil {
		return tp.whole
	}
	if sni == "" {
		return nil
	}
	if rt, ok := tp.exact[sni]; ok {
		return rt
	}
	for i := 1; i < len(sni); i++ {
		if sni[i] != '.' {
			continue
		}
		if rt, ok := tp.wildcard[sni[i:]]; ok {
			return rt
		}
	}
	return nil
}

// compileTCP builds the TCP table of s. resolve turns a snapshot backend
// into the pool's backend; every backend used is added to used, so the
// pool keeps it. Routes that cannot be served are left out and returned
// as problems.
func compileTCP(s *Snapshot, resolve func(Backend) *backend, used map[*backend]struct{}) (*tcpTable, []error) {
	t := emptyTCPTable()
	var problems []error
	for i, r := range s.TCP {
		bad := func(format string, args ...any) {
			problems = append(problems, fmt.Errorf("tcp route %d (app %q, port %d): %w: %s", i, r.App, r.Port, ErrInvalidRoute, fmt.Sprintf(format, args...)))
		}
		if r.Port < 1 || r.Port > 65535 {
			bad("the port must be between 1 and 65535")
			continue
		}
		tp := t.ports[r.Port]
		if tp == nil {
			tp = &tcpPort{exact: map[string]*tcpRoute{}, wildcard: map[string]*tcpRoute{}}
		}
		rt := &tcpRoute{port: r.Port, sni: r.SNI, app: r.App}
		switch {
		case r.SNI == "" && (tp.whole != nil || len(tp.exact)+len(tp.wildcard) > 0):
			bad("the port is already routed; a port is forwarded whole to one app or shared by server name")
			continue
		case r.SNI == "":
			tp.whole = rt
		case tp.whole != nil:
			bad("server name %q on a port already forwarded whole", r.SNI)
			continue
		default:
			name, wildcard, err := routeHost(r.SNI)
			if err != nil {
				bad("server name: %v", err)
				continue
			}
			m := tp.exact
			if wildcard {
				m = tp.wildcard
			}
			if _, dup := m[name]; dup {
				bad("server name %q is already routed on the port", r.SNI)
				continue
			}
			rt.sni = name
			m[name] = rt
		}
		t.ports[r.Port] = tp
		ids := map[string]bool{}
		for _, sb := range r.Backends {
			if sb.ID == "" || sb.Addr == "" {
				bad("backend %q at %q needs both an id and an address; it was left out", sb.ID, sb.Addr)
				continue
			}
			if ids[sb.ID] {
				continue
			}
			ids[sb.ID] = true
			b := resolve(sb)
			used[b] = struct{}{}
			rt.targets = append(rt.targets, tcpTarget{b: b, addr: sb.Addr, weight: min(max(int64(sb.Weight), 1), maxWeight)})
		}
	}
	return t, problems
}

// resolveTCPLocked returns the pool's backend with sb's ID whatever its
// HTTP address, since a TCP route may reach the instance on another port;
// a backend no HTTP route knows is made with sb's address. HTTP routes
// are compiled first, so they decide a shared backend's address. p.mu
// must be held.
func (p *pool) resolveTCPLocked(sb Backend) *backend {
	if b := p.byID[sb.ID]; b != nil {
		b.removed.Store(false)
		return b
	}
	return p.resolveLocked(sb)
}

// pick chooses the open target of rt with the fewest connections and
// requests in flight per unit of weight, skipping the backends in tried.
// Ties go to a random one in proportion to weight. Targets ejected by
// passive health sit out unless every open target is ejected, as on HTTP
// routes. It returns nil when no target is left.
func (rt *tcpRoute) pick(tried map[*backend]bool) *tcpTarget {
	now := time.Now().UnixNano()
	if tg := rt.pickAmong(tried, now, true); tg != nil {
		return tg
	}
	return rt.pickAmong(tried, now, false)
}

func (rt *tcpRoute) pickAmong(tried map[*backend]bool, now int64, skipEjected bool) *tcpTarget {
	var (
		best                  *tcpTarget
		bestLoad, bestW, tieW int64
	)
	for i := range rt.targets {
		tg := &rt.targets[i]
		if tg.b.closed() || tried[tg.b] || skipEjected && tg.health != nil && tg.health.ejected(now) {
			continue
		}
		load := tg.b.inflight.Load()
		if best == nil {
			best, bestLoad, bestW, tieW = tg, load, tg.weight, tg.weight
			continue
		}
		l, r := load*bestW, bestLoad*tg.weight
		switch {
		case l < r:
			best, bestLoad, bestW, tieW = tg, load, tg.weight, tg.weight
		case l == r:
			tieW += tg.weight
			if rand.Int64N(tieW) < tg.weight {
				best, bestLoad, bestW = tg, load, tg.weight
			}
		}
	}
	return best
}

// tcpHealthKey names the connect health of one TCP target: its backend
// state and the address connects go to.
type tcpHealthKey struct {
	b    *backend
	addr string
}

// attachHealth gives every target of t its connect health: the state
// kept for the same backend and address, or a fresh one. State of targets
// t no longer has is forgotten. Apply calls it, one at a time, before it
// publishes t.
func (p *tcpProxy) attachHealth(t *tcpTable) {
	kept := make(map[tcpHealthKey]*health, len(p.health))
	for _, tp := range t.ports {
		for rt := range tp.routes() {
			for i := range rt.targets {
				tg := &rt.targets[i]
				k := tcpHealthKey{tg.b, tg.addr}
				h := kept[k]
				if h == nil {
					if h = p.health[k]; h == nil {
						h = new(health)
					}
					kept[k] = h
				}
				tg.health = h
			}
		}
	}
	p.health = kept
}

// connectFailed records a failed connect to tg, ejecting it after
// connectFailLimit in a row for a cool-down that grows as an HTTP
// backend's does.
func (p *tcpProxy) connectFailed(rt *tcpRoute, tg *tcpTarget) {
	if tg.health.connectFails.Add(1) < connectFailLimit {
		return
	}
	d := tg.health.eject(tg.b.pool.cooldown, tg.b.pool.maxCooldown)
	p.logger.Warn("tcp backend ejected", "port", rt.port, "app", rt.app, "backend", tg.b.id, "addr", tg.addr,
		"reason", "consecutive failed connects", "cooldown", d)
}

// connected records a connect to tg that succeeded.
func (p *tcpProxy) connected(rt *tcpRoute, tg *tcpTarget) {
	tg.health.connectFails.Store(0)
	if tg.health.recovered() {
		p.logger.Info("tcp backend connects again; back in rotation", "port", rt.port, "app", rt.app,
			"backend", tg.b.id, "addr", tg.addr)
	}
}
