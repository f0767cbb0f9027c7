// Package edge is skiff's HTTP edge: the reverse proxy in front of every
// app. It routes each request by host and path prefix to one of the app's
// ready instances, balancing on requests in flight, and drains instances
// before they stop so that a deploy loses no request.
//
// The edge knows only route snapshots and backends, never the store or a
// runtime, so it can run in the server's process or as a process of its
// own. The control plane builds a Snapshot whole and hands it to Apply,
// which swaps it in atomically. What must outlive a swap (a backend's
// in-flight count, its draining state, its upstream connections) lives in
// a pool keyed by instance id, outside the snapshots.
package edge

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"sync/atomic"
	"time"
)

// Options configure an Edge. The zero value is usable.
type Options struct {
	// Logger receives the edge's logs. Default: slog.Default().
	Logger *slog.Logger
	// DialTimeout bounds connecting to an instance. Default 5s.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for an instance's response
	// headers once the request is sent. Default 60s.
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout is how long an idle upstream connection is kept.
	// Default 90s.
	IdleConnTimeout time.Duration
}

// maxPicks bounds how often one request chooses again after its backend
// closed between choice and count. It takes a race with Apply or Drain to
// need a second pick, so a few are plenty.
const maxPicks = 8

// Edge is an http.Handler that proxies to the backends of the applied
// snapshot. Its methods are safe for concurrent use.
type Edge struct {
	logger *slog.Logger
	table  atomic.Pointer[table]
	pool   *pool
}

// New returns an edge serving an empty snapshot of generation 0, which
// answers 404 to every request until Apply.
func New(opts Options) *Edge {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.DialTimeout <= 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.ResponseHeaderTimeout <= 0 {
		opts.ResponseHeaderTimeout = 60 * time.Second
	}
	if opts.IdleConnTimeout <= 0 {
		opts.IdleConnTimeout = 90 * time.Second
	}
	e := &Edge{logger: opts.Logger}
	buffers := newBufferPool()
	e.pool = &pool{
		byID:      map[string]*backend{},
		logger:    opts.Logger,
		transport: func() *http.Transport { return newTransport(opts) },
		proxy:     func(b *backend) *httputil.ReverseProxy { return newProxy(b, buffers, opts.Logger) },
	}
	e.table.Store(emptyTable())
	return e
}

// Apply makes s the routing table, atomically: a request sees the old
// table or the new one, never a mix. A snapshot older than the generation
// served is ignored; one of the same generation replaces it. Routes that
// cannot be served are skipped and logged (Snapshot.Validate reports them
// up front). Backends that s no longer lists take no new requests and are
// forgotten once their last request ends.
func (e *Edge) Apply(s *Snapshot) {
	if s == nil {
		return
	}
	e.pool.mu.Lock()
	defer e.pool.mu.Unlock()
	if cur := e.table.Load().generation; s.Generation < cur {
		e.logger.Warn("ignored an older route snapshot", "generation", s.Generation, "serving", cur)
		return
	}
	t, problems := compile(s, e.pool.resolveLocked)
	for _, err := range problems {
		e.logger.Warn("route skipped", "generation", s.Generation, "err", err)
	}
	// Publish first, then retire what the new table left out: a request
	// that bounces off a retired backend picks again from the new table.
	e.table.Store(t)
	e.pool.sweepLocked(t)
	e.logger.Debug("route snapshot applied", "generation", t.generation,
		"routes", len(s.Routes)-len(problems), "backends", len(t.backends))
}

// Generation returns the generation of the snapshot being served, which
// is what the control plane waits for before it calls a route change
// done.
func (e *Edge) Generation() uint64 {
	return e.table.Load().generation
}

// ServeHTTP proxies r to a backend of its route. It answers 404 when no
// route matches the host and path, and 503 with Retry-After when the
// route has no open backend.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := requestID(r.Header)
	if r.Method == http.MethodConnect {
		// The edge is no forward proxy.
		writePage(w, http.StatusMethodNotAllowed, id, "skiff: CONNECT is not supported\n")
		return
	}
	host := canonicalHost(r.Host)
	path := r.URL.Path
	var rt *route
	for range maxPicks {
		// Each pick reads the current table: after a bounce, the backend
		// is usually gone from it already.
		t := e.table.Load()
		rt = t.lookup(host, path)
		if rt == nil {
			writePage(w, http.StatusNotFound, id, notFoundPage(host))
			return
		}
		b := rt.pick()
		if b == nil {
			// Every backend of this table closed: if a newer table
			// replaced it meanwhile, pick from that one.
			if e.table.Load() != t {
				continue
			}
			break
		}
		if b.acquire() {
			e.forward(w, r, b, &requestInfo{id: id, app: rt.app})
			return
		}
	}
	w.Header().Set("Retry-After", "1")
	writePage(w, http.StatusServiceUnavailable, id, unavailablePage(rt.app))
}

// forward proxies r to b, which the caller has acquired. The count ends
// when the response is fully copied, or, for an upgraded connection, when
// both sides have closed; a panic that aborts the copy ends it too.
func (e *Edge) forward(w http.ResponseWriter, r *http.Request, b *backend, ri *requestInfo) {
	defer b.done()
	r = r.WithContext(context.WithValue(r.Context(), requestInfoKey{}, ri))
	b.proxy.ServeHTTP(w, r)
}

// Drain waits until the backend with id has no request in flight and no
// new request can start on it, then closes its idle upstream connections.
// If the backend is still in the applied snapshot, Drain marks it
// draining for good, so it takes no new request even while listed.
// Draining an unknown backend returns nil at once. If ctx ends first,
// Drain returns ctx's error (wrapped); an upgraded connection, such as a
// WebSocket, keeps a backend busy until it closes, so the caller's
// deadline decides how long to wait for it.
func (e *Edge) Drain(ctx context.Context, id string) error {
	b := e.pool.get(id)
	if b == nil {
		return nil
	}
	b.draining.Store(true)
	err := b.waitIdle(ctx)
	b.transport.CloseIdleConnections()
	if err != nil {
		e.logger.Warn("drain ended before the backend was idle", "backend", id, "in_flight", b.inflight.Load(), "err", err)
		return fmt.Errorf("drain backend %s: %w", id, err)
	}
	e.logger.Debug("backend drained", "backend", id)
	return nil
}

// InFlight returns how many requests the backend with id is serving now,
// or 0 for an unknown backend.
func (e *Edge) InFlight(id string) int {
	b := e.pool.get(id)
	if b == nil {
		return 0
	}
	return int(b.inflight.Load())
}
