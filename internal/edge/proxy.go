package edge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// maxIdlePerBackend is how many idle keep-alive connections the edge keeps
// to one instance. The standard library's default of 2 would make a busy
// edge dial a new connection for most requests.
const maxIdlePerBackend = 128

// exchange is one client request as the edge handles it, from ServeHTTP
// through the proxy's hooks (which see only the request, so it travels in
// the request's context) to the access log. One allocation holds it all.
type exchange struct {
	id    string
	rt    *route
	start time.Time
	// b is the backend the request is counted on; a retry moves it.
	b *backend

	// sends counts request headers written upstream, retried attempts of
	// the transport's own included; gotByte is set by the first response
	// byte. Trace hooks run on transport goroutines, hence atomics.
	sends   atomic.Int32
	gotByte atomic.Bool
	retried bool
	// upstreamErr names the failure that ended the request, for logs.
	upstreamErr string

	cancel    context.CancelFunc
	stopWatch func() bool
	body      *requestBody
	w         responseWriter
	trace     httptrace.ClientTrace
}

type exchangeKey struct{}

func exchangeFrom(ctx context.Context) *exchange {
	ex, _ := ctx.Value(exchangeKey{}).(*exchange)
	return ex
}

// watch makes the end of b's drain deadline cancel this request.
func (ex *exchange) watch(b *backend) {
	if ex.stopWatch != nil {
		ex.stopWatch()
	}
	ex.stopWatch = context.AfterFunc(b.gone, ex.cancel)
}

// newTransport makes one backend's upstream transport: HTTP/1.1 (or
// HTTP/2 with prior knowledge, for h2c) to a loopback or cluster address,
// never through an environment proxy, and without transparent gzip,
// which would change what the client gets.
func newTransport(o Options, h2c, keepAlive bool) *http.Transport {
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	t := &http.Transport{
		Proxy:                 nil,
		DialContext:           d.DialContext,
		ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		IdleConnTimeout:       o.IdleConnTimeout,
		MaxIdleConnsPerHost:   maxIdlePerBackend,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		DisableKeepAlives:     !keepAlive,
	}
	if h2c {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		t.Protocols = &p
	}
	return t
}

// upstream is the proxy's transport: it sends a request to the backend
// its exchange is counted on and, when that fails in a way that is safe
// to repeat, once more to another backend of the route.
type upstream struct {
	e *Edge
	// fresh sends retries over new connections only. On a reused
	// connection the standard transport may itself send a request again
	// after a failure; on a new one it never does, so a retried request
	// reaches backends at most twice in all.
	fresh *http.Transport
}

func (u *upstream) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := exchangeFrom(req.Context())
	tr := ex.b.transport
	for {
		b := ex.b
		start := time.Now()
		res, err := tr.RoundTrip(req)
		if err == nil {
			b.observe(time.Since(start), res.StatusCode)
			return res, nil
		}
		connect := isDialError(err)
		if req.Context().Err() == nil {
			// A request the client or a drain cancelled says nothing
			// about the backend.
			b.failed(connect)
			ex.upstreamErr = "response"
			if connect {
				ex.upstreamErr = "connect"
			}
			if ex.rt.metrics != nil {
				ex.rt.metrics.upstreamError(connect)
			}
		}
		if !ex.retryable(req, err, connect) {
			return nil, err
		}
		next := u.e.pickRetry(ex.rt, b)
		if next == nil {
			return nil, err
		}
		req, err = ex.moveTo(req, next)
		if err != nil {
			next.done()
			return nil, err
		}
		tr = u.fresh
		if next.h2c {
			// HTTP/2 repeats a request by itself only when the server
			// refused the stream unprocessed, which is safe.
			tr = next.transport
		}
		u.e.logger.Debug("retrying request on another backend", "app", ex.rt.app, "request_id", ex.id,
			"failed_backend", b.id, "backend", next.id, "err", unwrapURLError(err))
		if ex.rt.metrics != nil {
			ex.rt.metrics.retries.Inc()
		}
	}
}

// retryable decides whether a failed attempt may be repeated on another
// backend. Only one retry is made, never for a request the client or a
// drain cancelled, and only when the request either never reached the
// backend or is idempotent (RFC 9110 §9.2.2) and failed before any
// response byte. A slow backend (a timeout after the request was sent) is
// not retried: the next one would only be given the same work.
func (ex *exchange) retryable(req *http.Request, err error, connect bool) bool {
	if ex.retried || req.Context().Err() != nil {
		return false
	}
	switch sends := ex.sends.Load(); {
	case sends == 0:
		return true // nothing reached a backend
	case sends > 1:
		return false // the transport already sent it twice
	}
	if connect || ex.gotByte.Load() || upstreamTimedOut(err) {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// moveTo moves the exchange to next, which the caller acquired, and
// returns the request to send there. The body goes along only if none of
// it was read; otherwise it cannot be sent whole and moveTo fails.
func (ex *exchange) moveTo(req *http.Request, next *backend) (*http.Request, error) {
	out := req.Clone(req.Context())
	if ex.body != nil && req.Body != nil {
		v, ok := ex.body.detach()
		if !ok {
			return nil, errors.New("upstream failed after part of the request body was sent")
		}
		out.Body = v
	}
	out.URL.Host = next.addr
	shareTrailer(out, req)
	ex.retried = true
	ex.sends.Store(0)
	prev := ex.b
	ex.b = next
	ex.watch(next)
	prev.done()
	return out, nil
}

// shareTrailer gives out the trailer map of in, the request it was
// cloned from. The server fills in a request's trailers only when its
// body ends, long after a clone took a copy of the still empty map; the
// transport reads them at that same point, so a shared map carries them
// upstream. A body of known length cannot carry trailers over HTTP/1.1,
// so one that has them (possible over HTTP/2) goes chunked.
//
// Fields a header may not carry either (requestDropped: forwarding
// headers the edge sets, hop-by-hop fields) are taken out of the map,
// announced ones now and those that came unannounced when the body ends
// (trailerFilter), before the transport writes the trailer. Responses
// are filtered alike, with responseDropped.
func shareTrailer(out, in *http.Request) {
	if len(in.Trailer) == 0 {
		return
	}
	dropFields(in.Trailer, requestDropped)
	out.Trailer = in.Trailer
	if out.ContentLength > 0 {
		out.ContentLength = -1
	}
}

// dropFields deletes the fields named in drop from h.
func dropFields(h http.Header, drop *headerSet) {
	for k := range h {
		if drop.bits([]byte(k)) != 0 {
			delete(h, k)
		}
	}
}

// trailerFilter drops the fields named in drop from a message's trailer
// when its body ends: the trailer is filled in just before the body's
// end reaches the reader, and written on just after (by the transport
// for a request, by the reverse proxy for a response).
type trailerFilter struct {
	io.ReadCloser
	trailer func() http.Header
	drop    *headerSet
}

func (f trailerFilter) Read(p []byte) (int, error) {
	n, err := f.ReadCloser.Read(p)
	if err == io.EOF {
		dropFields(f.trailer(), f.drop)
	}
	return n, err
}

// pickRetry chooses and counts another open backend of rt than failed, or
// returns nil.
func (e *Edge) pickRetry(rt *route, failed *backend) *backend {
	for range maxPicks {
		b := rt.pick(failed)
		if b == nil {
			return nil
		}
		if b.acquire() {
			return b
		}
	}
	return nil
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func upstreamTimedOut(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// unwrapURLError drops the *url.Error around a transport error: it would
// carry the URL, and a query string may hold a token.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// newProxy makes the edge's reverse proxy. Requests keep their Host
// header, so apps see the name the client used.
func (e *Edge) newProxy(buffers httputil.BufferPool, trusted trustedProxies) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			ex := exchangeFrom(pr.In.Context())
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = ex.b.addr
			// Rewrite runs after the hop-by-hop headers, including those
			// a client named in Connection, were removed: what is set
			// here reaches the app.
			setForwarded(pr.Out.Header, pr.In, trusted)
			pr.Out.Header[requestIDHeader] = []string{ex.id}
			shareTrailer(pr.Out, pr.In)
		},
		Transport: &upstream{e: e, fresh: newTransport(e.opts, false, false)},
		// Flush every write at once: server-sent events and other streams
		// must not wait in the edge's buffer.
		FlushInterval: -1,
		BufferPool:    buffers,
		ModifyResponse: func(res *http.Response) error {
			// The edge's id wins over one the app may have set, so the
			// client sees the id the edge logged. Set after the response's
			// hop-by-hop headers were removed.
			res.Header[requestIDHeader] = []string{exchangeFrom(res.Request.Context()).id}
			// Only a body of unknown length (chunked), or one over
			// HTTP/2, can bring a trailer.
			dropFields(res.Trailer, responseDropped)
			if res.ContentLength < 0 || res.ProtoMajor == 2 {
				res.Body = trailerFilter{res.Body, func() http.Header { return res.Trailer }, responseDropped}
			}
			return nil
		},
		ErrorHandler: e.proxyError,
		ErrorLog:     slog.NewLogLogger(e.logger.Handler(), slog.LevelWarn),
	}
}

// proxyError answers a request whose upstream round trip failed.
func (e *Edge) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	ex := exchangeFrom(r.Context())
	err = unwrapURLError(err)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		w.Header().Set("Connection", "close")
		writePage(w, http.StatusRequestEntityTooLarge, ex.id, tooLargePage(ex.rt.app, tooLarge.Limit))
		return
	}
	level := slog.LevelWarn
	if r.Context().Err() != nil {
		level = slog.LevelDebug // the client left or a drain ended; nothing new upstream
	}
	e.logger.Log(r.Context(), level, "upstream request failed",
		"app", ex.rt.app, "backend", ex.b.id, "addr", ex.b.addr, "release", ex.b.release,
		"request_id", ex.id, "method", r.Method, "path", r.URL.Path, "retried", ex.retried, "err", err)
	if upstreamTimedOut(err) && r.Context().Err() == nil {
		writePage(w, http.StatusGatewayTimeout, ex.id, gatewayTimeoutPage(ex.rt.app, ex.id))
		return
	}
	writePage(w, http.StatusBadGateway, ex.id, badGatewayPage(ex.rt.app, ex.id))
}

// responseWriter records what the edge answered, for the access log and
// metrics. Unwrap lets http.ResponseController reach the connection for
// flushes, deadlines and upgrades.
type responseWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *responseWriter) WriteHeader(code int) {
	if w.status < 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.status < 200 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *responseWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// bufferPool lends 32 KiB copy buffers to the proxy, so streaming a body
// does not allocate one per request.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any {
		b := make([]byte, copyBufferSize)
		return &b
	}}}
}

func (bp *bufferPool) Get() []byte { return *bp.p.Get().(*[]byte) }

func (bp *bufferPool) Put(b []byte) {
	if cap(b) != copyBufferSize {
		return
	}
	b = b[:copyBufferSize]
	bp.p.Put(&b)
}

var _ httputil.BufferPool = (*bufferPool)(nil)
