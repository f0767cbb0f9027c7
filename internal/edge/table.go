package edge

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync/atomic"
)

// ErrInvalidRoute marks a route of a snapshot that the edge cannot serve.
// Apply skips such routes (and logs why) so that one bad route does not
// hold back every other app; Snapshot.Validate reports them up front.
var ErrInvalidRoute = errors.New("invalid route")

// table is the compiled form of a Snapshot: what a request needs to find
// its route in a few map look-ups. It is immutable once built.
type table struct {
	generation uint64
	// exact maps a canonical host to its routes, longest prefix first.
	exact map[string][]*route
	// wildcard maps a suffix with its leading dot (".apps.example.com" for
	// "*.apps.example.com") to its routes, longest prefix first.
	wildcard map[string][]*route
	// backends holds every backend some route of the table uses.
	backends map[*backend]struct{}
}

// route is one compiled Route.
type route struct {
	host     string
	prefix   string // "/" or a prefix without a trailing slash
	app      string
	targets  []target
	balancer balancer
	maxBody  int64
	// turn is the round-robin position; a new snapshot starts it over.
	turn atomic.Uint64
	// metrics are the app's metric series, resolved when the snapshot is
	// applied so that a request only adds to them.
	metrics *appMetrics
	// split, when set, sends each request to the route of one release
	// (choose) before a backend is picked.
	split *split
}

// target is a backend as one route sees it: its weight can change from
// one snapshot to the next while the backend's own state carries over.
type target struct {
	b      *backend
	weight int64
}

// maxWeight keeps weight arithmetic in the balancer far from overflow.
const maxWeight = 1 << 20

func emptyTable() *table {
	return &table{
		exact:    map[string][]*route{},
		wildcard: map[string][]*route{},
		backends: map[*backend]struct{}{},
	}
}

// Validate reports every route of s that Apply would skip, each with its
// index, app and what to fix.
func (s *Snapshot) Validate() error {
	if s == nil {
		return nil
	}
	t, problems := compile(s, func(Backend) *backend { return &backend{} })
	_, tcpProblems := compileTCP(s, func(Backend) *backend { return &backend{} }, t.backends)
	return errors.Join(append(problems, tcpProblems...)...)
}

// compile builds a table from s. resolve turns a snapshot backend into the
// long-lived backend state of the pool. Routes that cannot be served are
// left out and returned as problems.
func compile(s *Snapshot, resolve func(Backend) *backend) (*table, []error) {
	t := emptyTable()
	t.generation = s.Generation
	var problems []error
	first := map[[2]string]int{} // host key and prefix -> index of the route that has them
	for i, r := range s.Routes {
		host, wildcard, err := routeHost(r.Host)
		var prefix string
		if err == nil {
			prefix, err = routePrefix(r.PathPrefix)
		}
		if j, dup := first[[2]string{host, prefix}]; err == nil && dup {
			err = fmt.Errorf("host %q with path prefix %q: %w: route %d already has them; keep one route per host and prefix", r.Host, prefix, ErrInvalidRoute, j)
		}
		if err != nil {
			problems = append(problems, fmt.Errorf("route %d (app %q): %w", i, r.App, err))
			continue
		}
		first[[2]string{host, prefix}] = i
		rt, bad := compileRoute(i, r, host, prefix, resolve)
		problems = append(problems, bad...)
		for _, tg := range rt.targets {
			t.backends[tg.b] = struct{}{}
		}
		if wildcard {
			t.wildcard[host] = append(t.wildcard[host], rt)
		} else {
			t.exact[host] = append(t.exact[host], rt)
		}
	}
	for _, m := range []map[string][]*route{t.exact, t.wildcard} {
		for _, rs := range m {
			sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].prefix) > len(rs[j].prefix) })
		}
	}
	return t, problems
}

// compileRoute builds one route whose host and prefix are already
// canonical, leaving out (and reporting) backends it cannot use.
func compileRoute(index int, r Route, host, prefix string, resolve func(Backend) *backend) (*route, []error) {
	rt := &route{host: host, prefix: prefix, app: r.App, maxBody: r.MaxBody}
	var problems []error
	switch r.Balance {
	case "", BalanceP2C:
		rt.balancer = p2c
	case BalanceRoundRobin:
		rt.balancer = roundRobin
	default:
		problems = append(problems, fmt.Errorf("route %d (app %q): balance %q: %w: use %q or %q; the route uses %q", index, r.App, r.Balance, ErrInvalidRoute, BalanceP2C, BalanceRoundRobin, BalanceP2C))
	}
	if r.MaxBody < 0 {
		problems = append(problems, fmt.Errorf("route %d (app %q): max body %d: %w: use a size in bytes, or 0 for no limit; the route has no limit", index, r.App, r.MaxBody, ErrInvalidRoute))
		rt.maxBody = 0
	}
	ids := map[string]bool{}
	for _, sb := range r.Backends {
		if sb.ID == "" || sb.Addr == "" {
			problems = append(problems, fmt.Errorf("route %d (app %q): backend %q at %q: %w: a backend needs both an id and an address; it was left out", index, r.App, sb.ID, sb.Addr, ErrInvalidRoute))
			continue
		}
		if ids[sb.ID] {
			continue // listed twice: one share is what was meant
		}
		ids[sb.ID] = true
		w := min(max(int64(sb.Weight), 1), maxWeight)
		rt.targets = append(rt.targets, target{b: resolve(sb), weight: w})
	}
	if len(r.Releases) > 0 {
		compileSplit(rt, r.Releases, r.Sticky)
	}
	return rt, problems
}

// routeHost canonicalises a route's host and says whether it is a
// wildcard; for a wildcard it returns the suffix with its leading dot.
func routeHost(h string) (string, bool, error) {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	wildcard := strings.HasPrefix(h, "*.")
	name := h
	if wildcard {
		name = h[2:]
	}
	if name == "" {
		return "", false, fmt.Errorf("host %q: %w: give a name such as \"hello.example.com\" or \"*.apps.example.com\"", h, ErrInvalidRoute)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return "", false, fmt.Errorf("host %q: %w: empty label; labels are separated by single dots", h, ErrInvalidRoute)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return "", false, fmt.Errorf("host %q: %w: character %q is not allowed; use letters, digits, '-' and '_', with '*.' only as a wildcard's first label", h, ErrInvalidRoute, c)
			}
		}
	}
	if wildcard {
		return h[1:], true, nil
	}
	return h, false, nil
}

// routePrefix canonicalises a route's path prefix: "" becomes "/", and a
// trailing slash goes, so "/api" and "/api/" are the same route.
func routePrefix(p string) (string, error) {
	if p == "" || p == "/" {
		return "/", nil
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("path prefix %q: %w: it must start with '/'", p, ErrInvalidRoute)
	}
	return strings.TrimRight(p, "/"), nil
}

// canonicalHost turns a request's Host header into the form routes are
// keyed by: no port, lower case, no trailing dot. A bracketed IPv6
// literal keeps its brackets.
func canonicalHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h[i:], ']') < 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	return strings.ToLower(h) // returns h itself when it has no upper case
}

// lookup finds the route for a canonical host and a request path: exact
// host first, then wildcards from the longest suffix to the shortest; in
// each, the longest matching path prefix. It returns nil when nothing
// matches.
func (t *table) lookup(host, path string) *route {
	if rs, ok := t.exact[host]; ok {
		if rt := matchPrefix(rs, path); rt != nil {
			return rt
		}
	}
	if len(t.wildcard) == 0 {
		return nil
	}
	// The first dot after a non-empty label starts the longest suffix; a
	// wildcard needs at least one label before its suffix.
	for i := 1; i < len(host); i++ {
		if host[i] != '.' {
			continue
		}
		if rs, ok := t.wildcard[host[i:]]; ok {
			if rt := matchPrefix(rs, path); rt != nil {
				return rt
			}
		}
	}
	return nil
}

// matchPrefix returns the first route of rs (longest prefix first) whose
// prefix covers path as a whole path segment.
func matchPrefix(rs []*route, path string) *route {
	for _, rt := range rs {
		p := rt.prefix
		if p == "/" || path == p || len(path) > len(p) && path[len(p)] == '/' && path[:len(p)] == p {
			return rt
		}
	}
	return nil
}
