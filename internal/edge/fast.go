package edge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// FastServer serves the edge's plain HTTP/1.1 listener with fasthttp,
// which proxies about twice as many requests per second as net/http
// here, at less than half its tail latency (bench/edge/results.md). It
// routes with
// the same tables, counts and drains the same backends, and writes the
// same pages, access log and metrics as the net/http handler (ServeHTTP);
// only the code that moves bytes differs.
//
// What fasthttp cannot do, it hands to ServeHTTP on the same connection:
// upgrades such as WebSockets (fasthttp serves no upgrades itself) and
// requests for h2c backends (fasthttp speaks no HTTP/2; the adaptor reads
// such a request's body whole before it goes on). TLS and HTTP/2 to
// clients stay on net/http as well.
type FastServer struct {
	e       *Edge
	srv     *fasthttp.Server
	trusted trustedProxies
	// viaNetHTTP runs ServeHTTP on a fasthttp connection, with flushes
	// and hijacking.
	viaNetHTTP fasthttp.RequestHandler
	serving    atomic.Bool
	// raw, when set, makes this the raw engine (raw.go), which hands
	// what it does not serve itself to srv.
	raw *rawState
}

// fastReadBuffer is the per-connection read buffer, which also bounds a
// request's headers (a larger head gets 431). net/http's limit is
// Options.MaxHeaderBytes; fasthttp allocates its bound up front per
// connection, so it stays at a size a thousand idle clients can afford.
const fastReadBuffer = 16 << 10

// NewFastServer returns the fasthttp server for e's plain HTTP listener.
// Its timeouts come from e's Options: ReadHeaderTimeout for a request's
// headers, ClientBodyTimeout for each wait on its body, IdleTimeout for a
// kept-alive connection.
func (e *Edge) NewFastServer() *FastServer {
	s := &FastServer{e: e, trusted: trustedProxies(e.opts.TrustedProxies)}
	s.viaNetHTTP = fasthttpadaptor.NewFastHTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The adaptor makes fasthttp's RequestCtx the request's context;
		// it ends with the server, not the request, and its Err breaks
		// context.WithCancel. The request's own end is the drain's
		// business, as on the net/http listener.
		e.ServeHTTP(w, r.WithContext(context.Background()))
	}))
	s.srv = &fasthttp.Server{
		Handler:     s.Handler(),
		ReadTimeout: e.opts.ReadHeaderTimeout,
		// The body's own timeout starts once the headers are in; each
		// read of it extends the deadline (see requestBody). A request
		// without a body reads nothing more from the client, so it keeps
		// the header deadline and spares a timer update per request.
		HeaderReceived: func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
			if h.ContentLength() == 0 && !h.ConnectionUpgrade() {
				return fasthttp.RequestConfig{}
			}
			return fasthttp.RequestConfig{ReadTimeout: e.opts.ClientBodyTimeout}
		},
		IdleTimeout:           e.opts.IdleTimeout,
		ReadBufferSize:        fastReadBuffer,
		StreamRequestBody:     true,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		NoDefaultDate:         true,
		// A proxy has no use for parsed forms.
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		Logger:                       fastLogger{e},
	}
	return s
}

// Serve accepts connections on ln until Shutdown, or until ln fails.
func (s *FastServer) Serve(ln net.Listener) error {
	s.serving.Store(true)
	if s.raw != nil {
		return s.serveRaw(ln)
	}
	// An idle deadline a quarter of the idle timeout old still serves
	// (fast_conn.go).
	ln = lazyListener{Listener: ln, slack: s.e.opts.IdleTimeout / 4}
	if err := s.srv.Serve(ln); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("edge: serve: %w", err)
	}
	return nil
}

// Shutdown stops accepting, lets requests in progress finish (until ctx
// ends) and closes idle connections. Upgraded connections handed to
// net/http are the Drain protocol's to end, as on the net/http listener.
func (s *FastServer) Shutdown(ctx context.Context) error {
	if !s.serving.Load() {
		return nil
	}
	if s.raw != nil {
		return s.shutdownRaw(ctx)
	}
	return s.srv.ShutdownWithContext(ctx)
}

// Handler returns the fasthttp handler behind Serve, for a server the
// caller runs itself.
func (s *FastServer) Handler() fasthttp.RequestHandler { return s.serve }

// serve is ServeHTTP's counterpart: the same route lookup, body limit,
// pick and drain protocol (acquire before checking closed; done when the
// response is fully written).
func (s *FastServer) serve(ctx *fasthttp.RequestCtx) {
	e := s.e
	req := &ctx.Request
	if req.Header.ConnectionUpgrade() {
		// fasthttp serves no upgrades; net/http proxies them, on this
		// very connection.
		s.viaNetHTTP(ctx)
		return
	}
	// fasthttp took the time just before calling the handler.
	start := ctx.Time()
	id := fastRequestID(&req.Header)
	// As net/http does, an absolute-form request names its host in the
	// URI, which wins over the Host header.
	host := string(ctx.Host())
	path := requestPath(req)
	if req.Header.IsConnect() {
		fastWritePage(ctx, fasthttp.StatusMethodNotAllowed, id, "skiff: CONNECT is not supported\n")
		s.logRequest(ctx, start, id, host, path, nil, nil, fasthttp.StatusMethodNotAllowed, 0, 0)
		return
	}
	chost := canonicalHost(host)
	var rt *route
	for range maxPicks {
		t := e.table.Load()
		rt = t.lookup(chost, path)
		if rt == nil {
			e.metrics.unrouted.Inc()
			fastWritePage(ctx, fasthttp.StatusNotFound, id, notFoundPage(chost))
			s.logRequest(ctx, start, id, host, path, nil, nil, fasthttp.StatusNotFound, 0, 0)
			return
		}
		if cl := int64(req.Header.ContentLength()); rt.maxBody > 0 && cl > rt.maxBody {
			ctx.SetConnectionClose()
			fastWritePage(ctx, fasthttp.StatusRequestEntityTooLarge, id, tooLargePage(rt.app, rt.maxBody))
			s.logRequest(ctx, start, id, host, path, rt, nil, fasthttp.StatusRequestEntityTooLarge, 0, 0)
			return
		}
		var setCookie string
		if rt.split != nil {
			rt, setCookie = rt.choose(string(req.Header.Peek(ReleaseHeader)), string(req.Header.Cookie(rt.split.cookie)))
		}
		b := rt.pick(nil)
		if b == nil {
			if e.table.Load() != t {
				continue
			}
			break
		}
		if b.h2c {
			// fasthttp has no HTTP/2 client: net/http proxies this one,
			// picking again by itself.
			s.viaNetHTTP(ctx)
			return
		}
		if b.acquire() {
			s.forward(ctx, &fastExchange{id: id, rt: rt, b: b, start: start, host: host, path: path, setCookie: setCookie})
			return
		}
	}
	ctx.Response.Header.Set("Retry-After", "1")
	fastWritePage(ctx, fasthttp.StatusServiceUnavailable, id, unavailablePage(rt.app))
	s.logRequest(ctx, start, id, host, path, rt, nil, fasthttp.StatusServiceUnavailable, 0, 0)
}

// requestPath is the request's path as ServeHTTP sees it (r.URL.Path):
// percent-decoded, but not cleaned, so both listeners route "/a/../b"
// alike.
func requestPath(req *fasthttp.Request) string {
	raw := req.URI().PathOriginal()
	if i := strings.IndexByte(string(raw), '?'); i >= 0 {
		raw = raw[:i]
	}
	p := string(raw)
	if strings.IndexByte(p, '%') >= 0 {
		if u, err := url.PathUnescape(p); err == nil {
			p = u
		}
	}
	if p == "" || p[0] != '/' {
		// Absolute-form ("http://host/path") or "*": what net/http
		// would route on.
		if u, err := url.ParseRequestURI(string(req.Header.RequestURI())); err == nil {
			p = u.Path
		}
	}
	return p
}

// fastRequestID is requestID for fasthttp's headers.
func fastRequestID(h *fasthttp.RequestHeader) string {
	vs := h.PeekAll(requestIDHeader)
	if len(vs) == 1 && validRequestID(string(vs[0])) {
		return string(vs[0])
	}
	return newRequestID()
}

// fastWritePage is writePage for fasthttp: the same status, headers and
// text.
func fastWritePage(ctx *fasthttp.RequestCtx, status int, requestID, msg string) {
	h := &ctx.Response.Header
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set(requestIDHeader, requestID)
	ctx.SetStatusCode(status)
	ctx.SetBodyString(msg)
}

// logRequest is logRequest for fasthttp requests; rt and b may be nil.
func (s *FastServer) logRequest(ctx *fasthttp.RequestCtx, start time.Time, id, host, path string, rt *route, b *backend, status int, in, out int64) {
	d := time.Since(start)
	if rt != nil && rt.metrics != nil {
		if b == nil {
			rt.metrics.record(status, d.Seconds(), 0, 0)
		} else {
			rt.metrics.record(status, d.Seconds(), in, out)
		}
	}
	if s.e.log == nil {
		return
	}
	en := accessEntry{
		time: start, host: host, method: methodString(ctx.Method()), path: path,
		status: status, bytes: out, duration: d, requestID: id,
	}
	if rt != nil {
		en.app = rt.app
	}
	if b != nil {
		en.upstream = b.addr
	}
	s.e.log.add(en)
}

// methodString returns m as a string, without allocating one for the
// standard methods.
func methodString(m []byte) string {
	for _, s := range standardMethods {
		if string(m) == s {
			return s
		}
	}
	return string(m)
}

var standardMethods = []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions}

// fastLogger sends fasthttp's own messages (malformed requests, mostly)
// to the edge's log at debug level: a client's bad request is not the
// operator's problem.
type fastLogger struct{ e *Edge }

func (l fastLogger) Printf(format string, args ...any) {
	l.e.logger.Debug("fasthttp: " + fmt.Sprintf(format, args...))
}
