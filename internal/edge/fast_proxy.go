package edge

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// fastExchange is one request on the fasthttp listener, from forward to
// the end of its response body.
type fastExchange struct {
	id    string
	rt    *route
	b     *backend
	start time.Time
	host  string
	path  string
	// body is the client's streamed request body, nil when fasthttp had
	// it whole already.
	body *requestBody
	in   int64
	// resp is the response body's state, kept here to save an
	// allocation per request.
	resp fastBody
	// setCookie pins the client to its release of a split route ("" for
	// none).
	setCookie string
}

// fastClient is a backend's fasthttp connection pool. It lives in the
// backend (made on first use), so that it follows the backend across
// snapshots like the net/http transport does.
type fastClient struct {
	hc *fasthttp.HostClient
}

// fastClientFor returns b's fasthttp client, making it once.
func (s *FastServer) fastClientFor(b *backend) *fastClient {
	if fc := b.fast.Load(); fc != nil {
		return fc
	}
	o := s.e.opts
	idle := o.ResponseHeaderTimeout
	d := &net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	fc := &fastClient{hc: &fasthttp.HostClient{
		Addr: b.addr,
		Dial: func(addr string) (net.Conn, error) {
			c, err := d.Dial("tcp", addr)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: c, idle: idle}, nil
		},
		// Enough for a busy route's concurrency; beyond it requests wait
		// for a connection rather than fail, up to the dial timeout.
		MaxConns:            1024,
		MaxConnWaitTimeout:  o.DialTimeout,
		MaxIdleConnDuration: o.IdleConnTimeout,
		// Every body streams, however short: a body of known length may
		// still arrive slowly (a stream of events), and the client must
		// see each part as it comes. Bodies already in the read buffer
		// cost no extra wait.
		MaxResponseBodySize:           1,
		StreamResponseBody:            true,
		DisablePathNormalizing:        true,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		// The edge decides about retries itself (forward), as on the
		// net/http listener.
		MaxIdemponentCallAttempts: 1,
		ReadBufferSize:            8 << 10,
		WriteBufferSize:           8 << 10,
	}}
	if !b.fast.CompareAndSwap(nil, fc) {
		return b.fast.Load()
	}
	return fc
}

func idempotent(req *fasthttp.Request) bool { return idempotentMethod(string(req.Header.Method())) }

func idempotentMethod(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// idleConn bounds each wait for the upstream: net/http's transport
// bounds the wait for response headers (ResponseHeaderTimeout); fasthttp
// can bound only a whole response, which would cut long streams, so the
// edge bounds the silence instead. A stream that sends nothing for that
// long is cut, one that keeps sending is not. The deadline moves on only
// once a quarter of it has passed, so most reads leave it alone: the
// silence allowed is between three quarters of idle and idle.
type idleConn struct {
	net.Conn
	idle time.Duration
	set  time.Time // when the deadline was last moved
}

// SetReadDeadline is called by fasthttp before each response with the
// zero time (no timeout of its own): that starts the edge's, unless a
// deadline was set less than a quarter of idle ago, which leaves
// between three quarters of idle and idle, as Read does. On a busy
// connection that spares a timer update per request.
func (c *idleConn) SetReadDeadline(t time.Time) error {
	if !t.IsZero() {
		c.set = time.Time{} // not the edge's: the next zero time re-arms
		return c.Conn.SetReadDeadline(t)
	}
	now := time.Now()
	if !c.set.IsZero() && now.Sub(c.set) <= c.idle/4 {
		return nil
	}
	c.set = now
	return c.Conn.SetReadDeadline(now.Add(c.idle))
}

func (c *idleConn) Read(p []byte) (int, error) {
	if now := time.Now(); now.Sub(c.set) > c.idle/4 {
		c.set = now
		if err := c.Conn.SetReadDeadline(now.Add(c.idle)); err != nil {
			return 0, err
		}
	}
	return c.Conn.Read(p)
}

// forward proxies the request for ex, whose backend the caller acquired.
// b.done runs when the response body has been written to the client (or
// the write failed), not when the handler returns: fasthttp writes the
// body after that.
func (s *FastServer) forward(ctx *fasthttp.RequestCtx, ex *fastExchange) {
	m := ex.rt.metrics
	if m != nil {
		m.inFlight.Inc()
	}
	finished := false
	defer func() {
		if !finished { // a panic, or an answer written by the edge
			ex.b.done()
			if m != nil {
				m.inFlight.Dec()
			}
		}
	}()

	in := &ctx.Request
	clientClose := in.Header.ConnectionClose()
	out := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(out)
	in.Header.CopyTo(&out.Header)
	// The server parsed the request's URI already; the client would parse
	// the copy again.
	out.SetURI(in.URI())
	removeRequestHopHeaders(&out.Header)
	s.setForwarded(ctx, ex, &out.Header)
	out.Header.SetCanonical(hdrRequestID, s2b(ex.id))

	if in.IsBodyStream() && in.Header.ContentLength() != 0 {
		ex.body = &requestBody{src: io.NopCloser(forwardTrailers(&in.Header, &out.Header, requestDropped).reader(ctx.RequestBodyStream())), max: ex.rt.maxBody,
			timeout: s.e.opts.ClientBodyTimeout, deadline: ctx.Conn().SetReadDeadline}
		out.SetBodyStream(&stickyErr{r: &bodyView{b: ex.body}}, in.Header.ContentLength())
	} else {
		body := in.Body()
		if ex.rt.maxBody > 0 && int64(len(body)) > ex.rt.maxBody {
			s.answer(ctx, ex, fasthttp.StatusRequestEntityTooLarge, tooLargePage(ex.rt.app, ex.rt.maxBody), true)
			return
		}
		out.SetBodyRaw(body)
		ex.in = int64(len(body))
	}

	up := fasthttp.AcquireResponse()
	// The first attempt's time is the request's arrival: what the edge
	// did since then is a few microseconds, not worth a clock read.
	sent := ex.start
	var err error
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			sent = time.Now()
		}
		err = s.fastClientFor(ex.b).hc.Do(out, up)
		if err == nil {
			break
		}
		next := s.retryTarget(ctx, ex, out, err, attempt)
		if next == nil {
			break
		}
		if ex.rt.metrics != nil {
			ex.rt.metrics.retries.Inc()
		}
		s.e.logger.Debug("retrying request on another backend", "app", ex.rt.app, "request_id", ex.id,
			"failed_backend", ex.b.id, "backend", next.id, "err", err)
		prev := ex.b
		ex.b = next
		prev.done()
	}
	if ex.body != nil {
		ex.in = ex.body.bytesRead()
	}
	if err != nil {
		fasthttp.ReleaseResponse(up)
		s.upstreamFailed(ctx, ex, err)
		return
	}
	ex.b.observe(time.Since(sent), up.StatusCode())

	up.Header.CopyTo(&ctx.Response.Header)
	h := &ctx.Response.Header
	removeResponseHopHeaders(h)
	h.ResetConnectionClose()
	h.SetCanonical(hdrRequestID, s2b(ex.id))
	if ex.setCookie != "" {
		h.Add("Set-Cookie", ex.setCookie)
	}
	if clientClose {
		ctx.SetConnectionClose()
	}
	cl := up.Header.ContentLength()
	st := up.StatusCode()
	bodiless := in.Header.IsHead() || st < 200 || st == http.StatusNoContent || st == http.StatusNotModified
	fb := &ex.resp
	*fb = fastBody{s: s, ctx: ctx, ex: ex, up: up, src: up.BodyStream(), mayStream: !bodiless,
		trailers: forwardTrailers(&up.Header, h, responseDropped)}
	if fb.src == nil {
		fb.src, fb.mayStream = bytes.NewReader(nil), false
	}
	ctx.Response.SetBodyStream(fb, cl)
	finished = true // fb.CloseWithError ends the request
}

// retryTarget decides whether a failed attempt may be repeated, by the
// rules of the net/http listener (exchange.retryable): once, never for a
// slow backend, and only if the request never reached the backend or is
// idempotent and failed before any response byte. It returns the
// backend, acquired, to send it to: another one of the route if there is
// one, else the same one over a new connection (a kept-alive connection
// the backend had closed fails exactly so). The request body goes along
// only if none of it was sent.
func (s *FastServer) retryTarget(ctx *fasthttp.RequestCtx, ex *fastExchange, out *fasthttp.Request, err error, attempt int) *backend {
	if attempt > 0 {
		return nil
	}
	connect := isDialError(err)
	if !connect {
		if upstreamTimedOut(err) || errors.Is(err, fasthttp.ErrTimeout) || !idempotent(out) || !beforeResponse(err) {
			return nil
		}
	}
	if ex.body != nil {
		v, ok := ex.body.detach()
		if !ok {
			return nil
		}
		out.SetBodyStream(&stickyErr{r: v}, ctx.Request.Header.ContentLength())
	}
	return s.e.retryBackend(ex.rt, ex.b, connect)
}

// retryBackend returns the backend, acquired, that a retry of a request
// whose attempt on failed went wrong goes to: another one of rt if there
// is one, else failed itself unless it could not even be connected to.
func (e *Edge) retryBackend(rt *route, failed *backend, connect bool) *backend {
	next := e.pickRetry(rt, failed)
	if next == nil && !connect && failed.acquire() {
		next = failed
	}
	if next != nil {
		// The failure of an attempt that is retried counts as well, as
		// on the net/http listener; upstreamFailed records the last one.
		failed.failed(connect)
		if rt.metrics != nil {
			rt.metrics.upstreamError(connect)
		}
	}
	return next
}

// beforeResponse reports whether err says the upstream connection ended
// before any byte of a response: closed or reset, or broken while the
// request was written.
func beforeResponse(err error) bool {
	return errors.Is(err, fasthttp.ErrConnectionClosed) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// stickyErr keeps a read error that came with data for the next read:
// fasthttp writes what a read returned and ignores the error that came
// along, so a body over its limit would otherwise just end early.
type stickyErr struct {
	r   io.Reader
	err error
}

func (s *stickyErr) Read(p []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.r.Read(p)
	if n > 0 && err != nil && err != io.EOF {
		s.err, err = err, nil
	}
	return n, err
}

// upstreamFailed answers a request whose upstream round trip failed,
// with the statuses the net/http listener uses, after recording the
// failure for passive health and metrics.
func (s *FastServer) upstreamFailed(ctx *fasthttp.RequestCtx, ex *fastExchange, err error) {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		s.answer(ctx, ex, fasthttp.StatusRequestEntityTooLarge, tooLargePage(ex.rt.app, tooLarge.Limit), true)
		return
	}
	timedOut := upstreamTimedOut(err) || errors.Is(err, fasthttp.ErrTimeout)
	status, page := s.e.upstreamFailure(ex.rt, ex.b, ex.id, string(ctx.Method()), ex.path, err, timedOut)
	s.answer(ctx, ex, status, page, false)
}

// upstreamFailure records a failed upstream round trip for passive
// health, metrics and the log, and returns the status and page to answer
// with: 504 when it timed out, else 502. Both HTTP/1.1 engines use it.
func (e *Edge) upstreamFailure(rt *route, b *backend, id, method, path string, err error, timedOut bool) (int, string) {
	connect := isDialError(err)
	b.failed(connect)
	if rt.metrics != nil {
		rt.metrics.upstreamError(connect)
	}
	e.logger.Warn("upstream request failed",
		"app", rt.app, "backend", b.id, "addr", b.addr, "release", b.release,
		"request_id", id, "method", method, "path", path, "err", err)
	if timedOut {
		return http.StatusGatewayTimeout, gatewayTimeoutPage(rt.app, id)
	}
	return http.StatusBadGateway, badGatewayPage(rt.app, id)
}

// answer writes the edge's own page for a forwarded request and logs it.
func (s *FastServer) answer(ctx *fasthttp.RequestCtx, ex *fastExchange, status int, msg string, closeConn bool) {
	if closeConn {
		ctx.SetConnectionClose()
	}
	fastWritePage(ctx, status, ex.id, msg)
	s.logRequest(ctx, ex.start, ex.id, ex.host, ex.path, ex.rt, ex.b, status, ex.in, int64(len(msg)))
}

// errCutOff ends a response whose backend's drain ran out of time.
var errCutOff = errors.New("backend drained: response cut off")

// errIncomplete closes an upstream connection whose response body was
// not read to its end, so that its rest is never taken for the next
// response.
var errIncomplete = errors.New("response body not read to its end")

// fastBody is a response body on its way from the backend to the client.
// fasthttp closes it once the body is written, or the write failed, or
// the connection ended first: that is when the request ends for the
// drain protocol, the access log and the metrics.
type fastBody struct {
	s   *FastServer
	ctx *fasthttp.RequestCtx
	ex  *fastExchange
	// up is kept until the end: a streamed body reads its trailers into
	// up's header. It comes from fasthttp's pool, whose reuse of header
	// buffers saves most of a response's allocations.
	up  *fasthttp.Response
	src io.Reader
	n   int64
	eof bool
	// mayStream says the body may still be on the upstream connection
	// (it was neither skipped nor read whole).
	mayStream bool
	closed    bool
	// trailers carries the response's trailer (fast_trailer.go).
	trailers *trailerCopy
}

func (fb *fastBody) Read(p []byte) (int, error) {
	if fb.ex.b.gone.Err() != nil {
		return 0, errCutOff
	}
	n, err := fb.src.Read(p)
	fb.n += int64(n)
	if err == io.EOF {
		fb.eof = true
		fb.trailers.copy()
	}
	return n, err
}

// WriteTo copies the body to the client's connection buffer; fasthttp
// uses it for bodies of known length. Like the net/http listener's
// FlushInterval -1 it flushes whenever a read came back short, which is
// when the next read may wait for the backend: so each part of a stream
// reaches the client as it comes, while a body already at hand leaves
// with its headers in one write.
func (fb *fastBody) WriteTo(w io.Writer) (int64, error) {
	bw, _ := w.(*bufio.Writer)
	bp := fastCopyBuffers.Get().(*[]byte)
	defer fastCopyBuffers.Put(bp)
	buf := *bp
	var n int64
	for {
		k, err := fb.Read(buf)
		if k > 0 {
			if _, werr := w.Write(buf[:k]); werr != nil {
				return n, werr
			}
			n += int64(k)
		}
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if bw != nil && k < len(buf) {
			if err := bw.Flush(); err != nil {
				return n, err
			}
		}
	}
}

// fastCopyBuffers lend WriteTo its buffers.
var fastCopyBuffers = sync.Pool{New: func() any {
	b := make([]byte, 32<<10)
	return &b
}}

func (fb *fastBody) Close() error { return fb.CloseWithError(nil) }

// CloseWithError releases the upstream connection (or closes it, if the
// body was not read to its end or the client write failed) and ends the
// request.
func (fb *fastBody) CloseWithError(werr error) error {
	if fb.closed {
		return nil
	}
	fb.closed = true
	if werr == nil && fb.mayStream && !fb.eof {
		werr = errIncomplete
	}
	if werr == nil {
		// Read to its end (or bodiless): the connection goes back to the
		// pool, and up, done with, too.
		fb.up.CloseBodyStream()
		fasthttp.ReleaseResponse(fb.up)
	} else if c, ok := fb.src.(fasthttp.ReadCloserWithError); ok {
		// Closes the upstream connection. up still holds the stream, so
		// resetting it for the pool would close it twice: the collector
		// takes it instead.
		c.CloseWithError(werr)
	}
	fb.up = nil
	ex := fb.ex
	status := fb.ctx.Response.StatusCode()
	fb.s.logRequest(fb.ctx, ex.start, ex.id, ex.host, ex.path, ex.rt, ex.b, status, ex.in, fb.n)
	if werr != nil && werr != errIncomplete {
		fb.s.e.logger.Debug("response to the client ended early", "app", ex.rt.app, "request_id", ex.id, "err", werr)
	}
	ex.b.done()
	if m := ex.rt.metrics; m != nil {
		m.inFlight.Dec()
	}
	return nil
}

var (
	_ fasthttp.ReadCloserWithError = (*fastBody)(nil)
	_ io.WriterTo                  = (*fastBody)(nil)
)
