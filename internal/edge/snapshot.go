package edge

// Snapshot is an immutable routing table: every route the edge serves at
// one generation. The control plane builds it whole and hands it to
// Edge.Apply; the edge copies what it needs, so the caller must not expect
// later changes to the slices to take effect.
type Snapshot struct {
	// Generation orders snapshots. Apply ignores a snapshot older than the
	// one it serves, so a late publisher cannot roll routes back.
	Generation uint64
	Routes     []Route
	// TCP are the TCP ports the edge forwards (see ServeTCP).
	TCP []TCPRoute
}

// Route sends requests for a host (and optionally a path prefix) to the
// ready instances of one app.
type Route struct {
	// Host is an exact name ("hello.localhost") or a wildcard
	// ("*.apps.example.com") that matches any subdomain of the suffix, at
	// any depth, but not the suffix itself. Matching ignores case, the port
	// and a trailing dot. An exact host beats a wildcard, and a longer
	// wildcard suffix beats a shorter one.
	Host string
	// PathPrefix limits the route to a path subtree. "" and "/" mean every
	// path. "/api" matches "/api" and "/api/..." but not "/apix"; a trailing
	// slash is ignored. The longest matching prefix of the chosen host wins;
	// when no prefix of an exact host matches, wildcard routes are tried.
	PathPrefix string
	// App names the app, for pages and logs.
	App string
	// Backends are the app's ready instances. An empty list answers 503.
	Backends []Backend
	// Balance chooses how requests spread over the backends: "" or
	// BalanceP2C (default) compares the requests in flight on two backends
	// drawn at random in proportion to weight; BalanceRoundRobin takes
	// the backends in turn, each as often as its weight says.
	Balance string
	// MaxBody is the largest request body accepted, in bytes; a larger
	// one is answered 413. 0 means no limit.
	MaxBody int64
	// Releases, when set, splits the route's requests between releases
	// by weight before balancing over the chosen release's backends (see
	// split). Backends of releases it does not list get no requests. Nil
	// balances over every backend by its own Weight.
	Releases []ReleaseWeight
	// Sticky pins each client of a split route to its share with a
	// cookie, so it does not flip between releases from one request to
	// the next while the weights stay or grow.
	Sticky bool
	// Discover lists releases of the route whose ready instances an edge
	// may find itself (see Discovery). The edge package only carries
	// it: it serves Backends.
	Discover []Discovery
}

// Discovery says where a release's instances are listed outside the
// control plane (on Kubernetes: the EndpointSlices of the release's
// headless Service), so that an edge that follows that list serves the
// release's pods as they come and go, also while the control plane is
// away. Such an edge replaces the route's Backends of Release by the
// ready endpoints of Service at Port, less Exclude; an edge that follows
// no such list serves Backends as they are.
type Discovery struct {
	Release int
	// Service names the list: a Service in the namespace the edge
	// watches.
	Service string
	// Port is where each listed instance takes this route's traffic.
	Port int
	// H2C is the found backends' Backend.H2C.
	H2C bool
	// Exclude are IDs of the release's instances that the control plane
	// does not consider serving (draining, unready, on a lost node):
	// they get no traffic whatever the list says. IDs, not addresses: a
	// new instance may reuse a departed one's address.
	Exclude []string
}

// Balancing policies of a Route.
const (
	BalanceP2C        = "p2c"
	BalanceRoundRobin = "round_robin"
)

// Backend is one instance the edge may send requests to.
type Backend struct {
	// ID is the instance id. It is the backend's identity across
	// snapshots: its in-flight count, draining state and upstream
	// connections follow the ID, not the snapshot.
	ID string
	// Addr is host:port where the instance listens (127.0.0.1:NNNN).
	Addr string
	// Release is the release the instance runs.
	Release int
	// Weight scales the backend's share of requests against the other
	// backends of its route: the balancer compares in-flight requests per
	// unit of weight, and breaks ties at random in proportion to weight.
	// 0 means 1.
	Weight int
	// H2C speaks HTTP/2 without TLS (prior knowledge) to the instance
	// instead of HTTP/1.1. Default false.
	H2C bool
}
