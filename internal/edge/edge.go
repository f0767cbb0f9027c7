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
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

	// TrustedProxies are the networks of proxies in front of the edge:
	// from a peer in one of them, X-Forwarded-* and Forwarded headers are
	// extended; from anyone else they are replaced. Default: none.
	TrustedProxies []netip.Prefix

	// ReadHeaderTimeout bounds reading a client's request headers, so a
	// client that trickles them cannot hold a connection. Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout is how long a client's idle keep-alive connection is
	// kept. Default 120s.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the size of a request's headers. Default
	// 64 KiB.
	MaxHeaderBytes int
	// ClientBodyTimeout bounds each wait for more of a request body, so a
	// client that stops sending mid-body frees its connection. Default 60s.
	ClientBodyTimeout time.Duration

	// EjectionCooldown is how long passive health keeps a failing backend
	// out of rotation the first time; it doubles with each ejection
	// until the backend succeeds again, up to MaxEjectionCooldown.
	// Defaults 10s and 5m.
	EjectionCooldown, MaxEjectionCooldown time.Duration

	// AccessLog receives one JSON line per request, written on the
	// edge's own goroutine. Nil means no access log.
	AccessLog io.Writer
	// Metrics is where the edge registers its Prometheus metrics. Nil
	// means they are kept but not exported.
	Metrics prometheus.Registerer

	// TCP configures TCP forwarding (ServeTCP); DialTimeout applies to it
	// too.
	TCP TCPOptions
}

// defaults fills in every zero field of o.
func (o *Options) defaults() {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	setDefault(&o.DialTimeout, 5*time.Second)
	setDefault(&o.ResponseHeaderTimeout, 60*time.Second)
	setDefault(&o.IdleConnTimeout, 90*time.Second)
	setDefault(&o.ReadHeaderTimeout, 10*time.Second)
	setDefault(&o.IdleTimeout, 120*time.Second)
	setDefault(&o.ClientBodyTimeout, 60*time.Second)
	setDefault(&o.EjectionCooldown, 10*time.Second)
	setDefault(&o.MaxEjectionCooldown, 5*time.Minute)
	o.MaxEjectionCooldown = max(o.MaxEjectionCooldown, o.EjectionCooldown)
	if o.MaxHeaderBytes <= 0 {
		o.MaxHeaderBytes = 64 << 10
	}
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}

// maxPicks bounds how often one request chooses again after its backend
// closed between choice and count. It takes a race with Apply or Drain to
// need a second pick, so a few are plenty.
const maxPicks = 8

// Edge is an http.Handler that proxies to the backends of the applied
// snapshot. Its methods are safe for concurrent use.
type Edge struct {
	opts    Options
	logger  *slog.Logger
	table   atomic.Pointer[table]
	pool    *pool
	proxy   *httputil.ReverseProxy
	metrics *metrics
	log     *accessLog // nil without an access log
	tcp     *tcpProxy
}

// New returns an edge serving an empty snapshot of generation 0, which
// answers 404 to every request until Apply.
//
// An edge with an access log writes it on a goroutine of its own until
// Close.
func New(opts Options) *Edge {
	opts.defaults()
	e := &Edge{opts: opts, logger: opts.Logger, metrics: newMetrics(opts.Metrics)}
	e.pool = &pool{
		byID:        map[string]*backend{},
		logger:      opts.Logger,
		transport:   func(h2c bool) *http.Transport { return newTransport(opts, h2c, true) },
		cooldown:    opts.EjectionCooldown,
		maxCooldown: opts.MaxEjectionCooldown,
	}
	e.proxy = e.newProxy(newBufferPool(), trustedProxies(opts.TrustedProxies))
	if opts.AccessLog != nil {
		e.log = newAccessLog(opts.AccessLog, e.metrics.logDropped.Inc)
	}
	e.table.Store(emptyTable())
	e.tcp = newTCPProxy(opts.TCP, opts.DialTimeout, opts.Logger)
	return e
}

// Close stops the access log writer after writing what it queued, and
// returns its first write error. Requests served after Close are not
// logged.
func (e *Edge) Close() error {
	if e.log == nil {
		return nil
	}
	return e.log.close()
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
	// After the HTTP routes, so they decide a shared backend's address.
	tt, tcpProblems := compileTCP(s, e.pool.resolveTCPLocked, t.backends)
	problems = append(problems, tcpProblems...)
	for _, err := range problems {
		e.logger.Warn("route skipped", "generation", s.Generation, "err", err)
	}
	e.resolveMetrics(t)
	// Publish first, then retire what the new table left out: a request
	// that bounces off a retired backend picks again from the new table.
	e.table.Store(t)
	e.tcp.apply(tt)
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
// route matches the host and path, 413 when the body is larger than the
// route allows, and 503 with Retry-After when the route has no open
// backend.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	id := requestID(r.Header)
	if r.Method == http.MethodConnect {
		// The edge is no forward proxy.
		writePage(w, http.StatusMethodNotAllowed, id, "skiff: CONNECT is not supported\n")
		e.logRequest(r, start, id, nil, nil, http.StatusMethodNotAllowed, 0)
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
			e.metrics.unrouted.Inc()
			writePage(w, http.StatusNotFound, id, notFoundPage(host))
			e.logRequest(r, start, id, nil, nil, http.StatusNotFound, 0)
			return
		}
		if rt.maxBody > 0 && r.ContentLength > rt.maxBody {
			w.Header().Set("Connection", "close")
			writePage(w, http.StatusRequestEntityTooLarge, id, tooLargePage(rt.app, rt.maxBody))
			e.logRequest(r, start, id, rt, nil, http.StatusRequestEntityTooLarge, 0)
			return
		}
		rt = rt.chooseHTTP(w, r)
		b := rt.pick(nil)
		if b == nil {
			// Every backend of this table closed: if a newer table
			// replaced it meanwhile, pick from that one.
			if e.table.Load() != t {
				continue
			}
			break
		}
		if b.acquire() {
			e.forward(w, r, &exchange{id: id, rt: rt, start: start, b: b})
			return
		}
	}
	w.Header().Set("Retry-After", "1")
	writePage(w, http.StatusServiceUnavailable, id, unavailablePage(rt.app))
	e.logRequest(r, start, id, rt, nil, http.StatusServiceUnavailable, 0)
}

// forward proxies r for ex, whose backend the caller has acquired. The
// count ends when the response is fully copied, or, for an upgraded
// connection, when both sides have closed; a panic that aborts the copy
// ends it too. If the backend's drain runs out of time first, the request
// is cancelled.
func (e *Edge) forward(w http.ResponseWriter, r *http.Request, ex *exchange) {
	m := ex.rt.metrics
	if m != nil {
		m.inFlight.Inc()
	}
	ex.w.ResponseWriter = w
	ctx, cancel := context.WithCancel(context.WithValue(r.Context(), exchangeKey{}, ex))
	ex.cancel = cancel
	ex.trace.WroteHeaders = func() { ex.sends.Add(1) }
	ex.trace.GotFirstResponseByte = func() { ex.gotByte.Store(true) }
	ctx = httptrace.WithClientTrace(ctx, &ex.trace)
	ex.watch(ex.b)
	defer func() {
		ex.stopWatch()
		cancel()
		ex.b.done()
		if m != nil {
			m.inFlight.Dec()
		}
	}()
	out := r.WithContext(ctx)
	if r.Body != nil && r.Body != http.NoBody {
		ex.body = &requestBody{src: trailerFilter{r.Body, func() http.Header { return r.Trailer }, requestDropped}, max: ex.rt.maxBody, timeout: e.opts.ClientBodyTimeout,
			deadline: http.NewResponseController(w).SetReadDeadline}
		out.Body = &bodyView{b: ex.body}
	}
	e.proxy.ServeHTTP(&ex.w, out)

	status := ex.w.status
	if status == 0 && r.Header.Get("Upgrade") != "" {
		status = http.StatusSwitchingProtocols // hijacked: the proxy wrote it on the connection
	}
	var in int64
	if ex.body != nil {
		in = ex.body.bytesRead()
	}
	e.logRequest(r, ex.start, ex.id, ex.rt, ex.b, status, ex.w.bytes)
	if m != nil {
		m.record(status, time.Since(ex.start).Seconds(), in, ex.w.bytes)
	}
}

// logRequest queues an access log entry; rt and b may be nil.
func (e *Edge) logRequest(r *http.Request, start time.Time, id string, rt *route, b *backend, status int, bytes int64) {
	if rt != nil && rt.metrics != nil && b == nil {
		// Answered by the edge itself: record it here, forward records
		// the rest.
		rt.metrics.record(status, time.Since(start).Seconds(), 0, 0)
	}
	if e.log == nil {
		return
	}
	en := accessEntry{
		time: start, host: r.Host, method: r.Method, path: r.URL.Path,
		status: status, bytes: bytes, duration: time.Since(start), requestID: id,
	}
	if rt != nil {
		en.app = rt.app
	}
	if b != nil {
		en.upstream = b.addr
	}
	e.log.add(en)
}

// resolveMetrics gives every route of t its app's metric series and
// drops the series of apps t no longer serves.
func (e *Edge) resolveMetrics(t *table) {
	apps := map[string]bool{}
	for _, m := range []map[string][]*route{t.exact, t.wildcard} {
		for _, rs := range m {
			for _, rt := range rs {
				rt.metrics = e.metrics.forApp(rt.app)
				apps[rt.app] = true
				if rt.split != nil {
					for _, g := range rt.split.groups {
						g.rt.metrics = rt.metrics
					}
				}
			}
		}
	}
	e.metrics.keepOnly(apps)
}

// Drain waits until the backend with id has no request in flight and no
// new request can start on it, then closes its idle upstream connections.
// If the backend is still in the applied snapshot, Drain marks it
// draining for good, so it takes no new request even while listed.
// Draining an unknown backend returns nil at once. If ctx ends first,
// Drain cancels the requests still on the backend, closing upgraded
// connections such as WebSockets, and returns ctx's error (wrapped): the
// caller's deadline decides how long a long-lived connection may keep an
// instance that is leaving.
func (e *Edge) Drain(ctx context.Context, id string) error {
	b := e.pool.get(id)
	if b == nil {
		return nil
	}
	b.draining.Store(true)
	err := b.waitIdle(ctx)
	b.closeIdle()
	if err != nil {
		// Out of time: cancel what still runs on the backend, upgraded
		// connections included, rather than let it pin an instance that
		// is about to stop.
		if b.cutOff != nil {
			b.cutOff()
		}
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
