package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The raw engine serves the plain HTTP/1.1 listener's common case itself
// and hands every other connection to the fasthttp server.
//
// The common case is a request the edge forwards as it came: HTTP/1.1,
// origin-form, no body, no upgrade, no Expect, a route whose picked
// backend speaks HTTP/1.1, a client that is no trusted proxy. For it the
// raw path does about what the least Go proxy does (bench/edge/minimal)
// plus the edge's duties: it reads the head, copies it to the upstream
// with the forwarding headers set, and copies the response back, without
// the header maps, copies and serialising of a general HTTP library.
//
// Anything else, and anything the strict parser (raw_parse.go) doubts, is
// handed to fasthttp before a byte was written for that request: the
// connection, with the bytes already read replayed first, goes to
// fasthttp's Serve, which then serves that request and the rest of the
// connection exactly as the fasthttp engine would. So there is one
// behaviour for all that is not the common case, not two.

// NewRawServer returns the raw engine for e's plain HTTP listener; its
// Serve and Shutdown are FastServer's, and what it hands off is served by
// the same fasthttp server NewFastServer makes.
func (e *Edge) NewRawServer() *FastServer {
	s := e.NewFastServer()
	s.raw = &rawState{handoff: make(chan net.Conn), closed: make(chan struct{}), conns: map[*rawConn]struct{}{}}
	return s
}

// rawState is the raw engine's part of a FastServer.
type rawState struct {
	// handoff passes connections to fasthttp's Serve (handoffListener).
	handoff   chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	addr      net.Addr
	// ln is the listener Serve accepts from; Shutdown closes it.
	ln net.Listener

	// mu guards conns, and orders Serve's adding to wg before
	// Shutdown's wait.
	mu    sync.Mutex
	conns map[*rawConn]struct{}
	wg    sync.WaitGroup
	// closing is set by Shutdown: connections end after their current
	// request, idle ones at once.
	closing atomic.Bool
	// handoffs counts the connections given to fasthttp.
	handoffs atomic.Int64
}

// rawConn is a client connection the raw path serves.
type rawConn struct {
	c  net.Conn
	br *bufio.Reader
	// armed is the read deadline set on c. The raw path moves it itself,
	// as lazyConn does for fasthttp: the idle deadline only once it is
	// more than slack older than wanted, so a busy connection costs no
	// timer update per request.
	armed time.Time
	slack time.Duration
	// idle is set while the connection waits for a request's first byte:
	// Shutdown closes such connections.
	idle atomic.Bool
}

// serveRaw is Serve for the raw engine.
func (s *FastServer) serveRaw(ln net.Listener) error {
	rs := s.raw
	rs.addr = ln.Addr()
	rs.mu.Lock()
	rs.ln = ln
	rs.mu.Unlock()
	fastDone := make(chan error, 1)
	go func() { fastDone <- s.srv.Serve(handoffListener{rs}) }()
	slack := s.e.opts.IdleTimeout / 4
	var err error
	for {
		var c net.Conn
		c, err = ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(10 * time.Millisecond)
				continue
			}
			break
		}
		rc := &rawConn{c: c, slack: slack}
		rs.mu.Lock()
		if rs.closing.Load() {
			rs.mu.Unlock()
			c.Close()
			continue
		}
		rs.conns[rc] = struct{}{}
		rs.wg.Add(1)
		rs.mu.Unlock()
		go s.serveRawConn(rc)
	}
	rs.stop()
	if ferr := <-fastDone; ferr != nil && !errors.Is(ferr, net.ErrClosed) {
		return fmt.Errorf("edge: serve handed-off connections: %w", ferr)
	}
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("edge: accept: %w", err)
}

// stop closes the hand-off listener, once.
func (rs *rawState) stop() { rs.closeOnce.Do(func() { close(rs.closed) }) }

// shutdownRaw closes the raw path's idle connections, lets those in a
// request finish it, and waits for them until ctx ends; then fasthttp
// shuts down what was handed to it.
func (s *FastServer) shutdownRaw(ctx context.Context) error {
	rs := s.raw
	rs.mu.Lock()
	rs.closing.Store(true)
	if rs.ln != nil {
		rs.ln.Close()
	}
	for rc := range rs.conns {
		if rc.idle.Load() {
			rc.c.Close()
		}
	}
	rs.mu.Unlock()
	done := make(chan struct{})
	go func() { rs.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	err := s.srv.ShutdownWithContext(ctx)
	rs.stop()
	return err
}

// handoffListener is what fasthttp's Serve accepts handed-off
// connections from.
type handoffListener struct{ rs *rawState }

func (l handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.rs.handoff:
		return c, nil
	case <-l.rs.closed:
		return nil, net.ErrClosed
	}
}

func (l handoffListener) Close() error   { l.rs.stop(); return nil }
func (l handoffListener) Addr() net.Addr { return l.rs.addr }

// replayConn is a handed-off connection: its reads return the bytes the
// raw path had read but not consumed, then the connection's.
type replayConn struct {
	net.Conn
	buf []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// handOff gives rc to fasthttp, and reports whether it took it.
func (s *FastServer) handOff(rc *rawConn) bool {
	var buf []byte
	if n := rc.br.Buffered(); n > 0 {
		b, _ := rc.br.Peek(n)
		buf = append([]byte(nil), b...)
	}
	rs := s.raw
	// fasthttp sets deadlines twice per request: a lazyConn spares the
	// timer updates, as on the fasthttp listener.
	lc := &lazyConn{Conn: rc.c, slack: rc.slack, armed: rc.armed, want: rc.armed}
	rs.handoffs.Add(1) // before fasthttp may answer
	select {
	case rs.handoff <- &replayConn{Conn: lc, buf: buf}:
		return true
	case <-rs.closed:
		rs.handoffs.Add(-1)
		return false
	}
}

// serveRawConn serves one client connection until it ends or is handed
// off.
func (s *FastServer) serveRawConn(rc *rawConn) {
	rs := s.raw
	handed := false
	defer func() {
		if !handed {
			rc.c.Close()
		}
		rs.mu.Lock()
		delete(rs.conns, rc)
		rs.mu.Unlock()
		rs.wg.Done()
	}()
	peer, ok := netip.Addr{}, false
	if ta, isTCP := rc.c.RemoteAddr().(*net.TCPAddr); isTCP {
		peer, ok = ta.AddrPort().Addr().Unmap(), true
	}
	rc.br = bufio.NewReaderSize(rc.c, fastReadBuffer)
	if ok && len(s.trusted) > 0 && s.trusted.contains(peer) {
		// A trusted proxy's forwarding headers are extended, not
		// replaced: fasthttp's path does that.
		handed = s.handOff(rc)
		return
	}
	x := &rawExchange{s: s, rc: rc, peer: peer, peerOK: ok}
	for {
		n, err := x.readRequest()
		if err != nil {
			if err == errHandOff {
				handed = s.handOff(rc)
			}
			return
		}
		keep, err := x.serve(n)
		if err == errHandOff {
			handed = s.handOff(rc)
			return
		}
		if !keep || err != nil {
			return
		}
		if rs.closing.Load() {
			return
		}
	}
}

// readRequest waits for a complete request head: up to IdleTimeout for
// its first byte, then up to ReadHeaderTimeout from there. It returns
// the head's length, errHandOff for a head the raw path cannot take
// whole (over the buffer: fasthttp answers 431), or the error that ended
// the connection.
func (x *rawExchange) readRequest() (int, error) {
	rc, br, o := x.rc, x.rc.br, x.s.e.opts
	if br.Buffered() == 0 {
		rc.idle.Store(true)
		if x.last.IsZero() {
			x.last = time.Now()
		}
		// The previous request's end stands in for now.
		want := x.last.Add(o.IdleTimeout)
		if rc.armed.IsZero() || want.Sub(rc.armed) > rc.slack {
			if err := rc.arm(want); err != nil {
				return 0, err
			}
		}
		if x.s.raw.closing.Load() {
			return 0, net.ErrClosed
		}
		_, err := br.Peek(1)
		if err != nil && errors.Is(err, os.ErrDeadlineExceeded) && rc.armed.Before(want) {
			// An idle deadline up to slack early ended the wait: wait on.
			if err = rc.arm(want); err == nil {
				_, err = br.Peek(1)
			}
		}
		rc.idle.Store(false)
		if err != nil {
			return 0, err
		}
	}
	x.start = time.Now()
	deadlineSet := false
	for {
		b, _ := br.Peek(br.Buffered())
		if n := headEnd(b); n >= 0 {
			return n, nil
		}
		if br.Buffered() == br.Size() {
			return 0, errHandOff
		}
		if !deadlineSet {
			if err := rc.arm(x.start.Add(o.ReadHeaderTimeout)); err != nil {
				return 0, err
			}
			deadlineSet = true
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			if br.Buffered() > 0 && !errors.Is(err, os.ErrDeadlineExceeded) {
				// An incomplete head and the client's end: fasthttp
				// answers it as it would.
				return 0, errHandOff
			}
			return 0, err
		}
	}
}

// arm sets the connection's read deadline to t.
func (rc *rawConn) arm(t time.Time) error {
	if err := rc.c.SetReadDeadline(t); err != nil {
		return fmt.Errorf("set read deadline: %w", err)
	}
	rc.armed = t
	return nil
}

// rawExchange is the raw path's state for a connection's requests; its
// buffers are reused from one request to the next.
type rawExchange struct {
	s      *FastServer
	rc     *rawConn
	peer   netip.Addr
	peerOK bool
	start  time.Time
	// last is when the previous request ended.
	last time.Time
	req  rawRequest
	resp rawResponse
	up   []byte // the upstream request head
	out  []byte // output to the client
	// Per request:
	id, host, path string
	method         string
	rt             *route
	b              *backend
	setCookie      string
	// held says b is acquired for this request (release).
	held bool
}

// serve serves the request whose head is the first n buffered bytes. It
// returns errHandOff, with nothing written, for a request the raw path
// does not take; else whether the connection may serve another request.
func (x *rawExchange) serve(n int) (keep bool, err error) {
	br := x.rc.br
	h, _ := br.Peek(n)
	r := &x.req
	if err := parseRequest(h, r); err != nil {
		return false, err
	}
	e := x.s.e
	x.host = string(r.host)
	x.path = rawPath(r.target)
	if len(x.path) == 0 || x.path[0] != '/' {
		return false, errHandOff
	}
	chost := canonicalHost(x.host)
	var b *backend
	var rt *route
	var setCookie string
	for range maxPicks {
		t := e.table.Load()
		rt = t.lookup(chost, x.path)
		if rt == nil {
			return false, errHandOff // fasthttp answers 404
		}
		setCookie = ""
		if rt.split != nil {
			rt, setCookie = rt.choose(string(r.release), r.cookie(rt.split.cookie))
		}
		b = rt.pick(nil)
		if b == nil || b.h2c {
			return false, errHandOff // 503, or net/http's HTTP/2 client
		}
		if b.acquire() {
			break
		}
		b = nil
	}
	if b == nil {
		return false, errHandOff
	}
	x.rt, x.b, x.setCookie = rt, b, setCookie
	x.method = methodString(r.method)
	if r.idCount == 1 && validRequestID(string(r.requestID)) {
		x.id = string(r.requestID)
	} else {
		x.id = newRequestID()
	}
	x.up = x.appendUpstreamHead(x.up[:0])
	clientClose := r.close
	br.Discard(n) // r's slices are not used past this point
	return x.forward(clientClose)
}

// appendUpstreamHead appends the request head for the backend: the
// request line as received, the client's fields minus requestDropped
// and those Connection names, then the edge's forwarding headers and
// request id, as setForwarded and forward set them on the fasthttp path.
func (x *rawExchange) appendUpstreamHead(out []byte) []byte {
	r := &x.req
	out = append(out, r.line...)
	out = append(out, "\r\n"...)
	for _, f := range r.fields {
		name := r.name(f)
		if r.drop != 0 && (requestDropped.bits(name) != 0 || r.drop&1 != 0 && r.connectionNames(name)) {
			continue
		}
		out = append(out, name...)
		out = append(out, ": "...)
		out = append(out, r.value(f)...)
		out = append(out, "\r\n"...)
	}
	if x.peerOK {
		out = append(out, "X-Forwarded-For: "...)
		out = x.peer.AppendTo(out)
		out = append(out, "\r\n"...)
	}
	out = append(out, "X-Forwarded-Host: "...)
	out = append(out, r.host...)
	out = append(out, "\r\nX-Forwarded-Proto: http\r\nForwarded: "...)
	out = appendForwardedElement(out, x.peer, x.peerOK, x.host, "http")
	out = append(out, "\r\n"+requestIDHeader+": "...)
	out = append(out, x.id...)
	return append(out, "\r\n\r\n"...)
}

// errUpstreamClosed marks an upstream connection that ended before any
// byte of a response.
var errUpstreamClosed = errors.New("upstream connection closed before the response")

// forward sends the request to x.b, acquired by the caller, retrying by
// retryTarget's rules, and copies the response to the client.
func (x *rawExchange) forward(clientClose bool) (keep bool, err error) {
	m := x.rt.metrics
	if m != nil {
		m.inFlight.Inc()
	}
	x.held = true
	defer x.release()
	sent := x.start
	var u *rawUpstream
	fresh := false
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			sent = time.Now()
		}
		u, err = x.roundTrip(fresh, sent)
		if err == nil {
			break
		}
		next := x.retryTarget(err, attempt)
		if next == nil {
			break
		}
		if m != nil {
			m.retries.Inc()
		}
		x.s.e.logger.Debug("retrying request on another backend", "app", x.rt.app, "request_id", x.id,
			"failed_backend", x.b.id, "backend", next.id, "err", err)
		fresh = next == x.b
		prev := x.b
		x.b = next
		prev.done()
	}
	if err != nil {
		return x.upstreamFailed(err)
	}
	x.b.observe(time.Since(sent), x.resp.status)
	return x.copyResponse(u, clientClose)
}

// release ends the request on its backend, once: done, and one fewer
// in flight.
func (x *rawExchange) release() {
	if !x.held {
		return
	}
	x.held = false
	x.b.done()
	if m := x.rt.metrics; m != nil {
		m.inFlight.Dec()
	}
}

// roundTrip writes the request head to a connection to x.b (a new one
// when fresh) and reads the response head, passing 103 on; now is about
// the time.
func (x *rawExchange) roundTrip(fresh bool, now time.Time) (*rawUpstream, error) {
	var u *rawUpstream
	pool := rawPoolFor(x.b)
	if !fresh {
		u = pool.get(now, x.s.e.opts.IdleConnTimeout)
	}
	if u == nil {
		var err error
		if u, err = x.s.rawDial(x.b); err != nil {
			return nil, err
		}
	}
	if err := u.arm(now); err != nil {
		u.c.Close()
		return nil, err
	}
	if _, err := u.c.Write(x.up); err != nil {
		u.c.Close()
		return nil, fmt.Errorf("%w: write: %w", errUpstreamClosed, err)
	}
	for {
		n, got, err := readHead(u.br)
		if err != nil {
			u.c.Close()
			if !got && (err == io.EOF || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)) {
				return nil, fmt.Errorf("%w: %w", errUpstreamClosed, err)
			}
			return nil, err
		}
		h, _ := u.br.Peek(n)
		if err := parseResponse(h, &x.resp); err != nil {
			u.c.Close()
			return nil, err
		}
		st := x.resp.status
		if st >= 200 {
			return u, nil
		}
		if st == http.StatusSwitchingProtocols {
			u.c.Close()
			return nil, fmt.Errorf("101 Switching Protocols to a request without Upgrade: %w", errBadResponse)
		}
		if st == http.StatusEarlyHints {
			x.out = appendResponseHead(x.out[:0], &x.resp, x.id, "", false)
			if _, err := x.rc.c.Write(x.out); err != nil {
				u.c.Close()
				return nil, fmt.Errorf("write 103 to client: %w", err)
			}
		}
		u.br.Discard(n)
	}
}

// retryTarget is FastServer.retryTarget for the raw path: once, for a
// failed connect or an idempotent request whose connection ended before
// any response byte; another backend if the route has one, else the same
// one over a new connection.
func (x *rawExchange) retryTarget(err error, attempt int) *backend {
	if attempt > 0 {
		return nil
	}
	connect := isDialError(err)
	if !connect && (!errors.Is(err, errUpstreamClosed) || !idempotentMethod(x.method)) {
		return nil
	}
	return x.s.e.retryBackend(x.rt, x.b, connect)
}

// upstreamFailed answers 502 or 504 as the other listeners do, after
// recording the failure.
func (x *rawExchange) upstreamFailed(err error) (bool, error) {
	status, msg := x.s.e.upstreamFailure(x.rt, x.b, x.id, x.method, x.path, err, upstreamTimedOut(err))
	// The backend is done with before the client has the answer, which
	// it may follow with a look at the backend's counts.
	x.release()
	out := x.out[:0]
	out = append(out, "HTTP/1.1 "...)
	out = append(out, fmt.Sprintf("%d %s", status, http.StatusText(status))...)
	out = append(out, "\r\nContent-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n"+requestIDHeader+": "...)
	out = append(out, x.id...)
	out = append(out, fmt.Sprintf("\r\nContent-Length: %d\r\n", len(msg))...)
	if x.req.close {
		out = append(out, "Connection: close\r\n"...)
	}
	out = append(out, "\r\n"...)
	if x.method != http.MethodHead {
		out = append(out, msg...)
	}
	x.out = out
	_, werr := x.rc.c.Write(out)
	x.last = time.Now()
	x.log(status, int64(len(msg)))
	return !x.req.close && werr == nil, werr
}

// copyResponse writes the response head and body to the client, then
// returns the upstream connection to the pool if the body was read to
// its end and the backend keeps it open.
func (x *rawExchange) copyResponse(u *rawUpstream, clientClose bool) (keep bool, err error) {
	r := &x.resp
	st := r.status
	bodiless := x.method == http.MethodHead || st == http.StatusNoContent || st == http.StatusNotModified
	toEOF := !bodiless && !r.chunked && r.length < 0
	closing := clientClose || toEOF
	x.out = appendResponseHead(x.out[:0], r, x.id, x.setCookie, closing)
	u.br.Discard(len(r.head))
	w := rawBody{src: u.br, dst: x.rc.c, out: x.out, b: x.b, up: u}
	switch {
	case bodiless:
		err = w.flush()
	case r.chunked:
		err = w.copyChunked()
	case r.length >= 0:
		if err = w.copyN(r.length, true); err == nil {
			err = w.flush()
		}
	default:
		if err = w.copyToEOF(); err == nil {
			err = w.flush()
		}
	}
	x.out = w.out[:0]
	x.last = time.Now()
	upOK := err == nil && !toEOF && !r.close
	if upOK {
		rawPoolFor(x.b).put(u, x.last)
	} else {
		u.c.Close()
	}
	x.log(st, w.n)
	if err != nil {
		x.s.e.logger.Debug("response to the client ended early", "app", x.rt.app, "request_id", x.id, "err", err)
		return false, err
	}
	return !closing, nil
}

// log records the request's metrics and access log entry; x.last is its
// end.
func (x *rawExchange) log(status int, out int64) {
	d := x.last.Sub(x.start)
	if m := x.rt.metrics; m != nil {
		m.record(status, d.Seconds(), 0, out)
	}
	if x.s.e.log == nil {
		return
	}
	x.s.e.log.add(accessEntry{
		time: x.start, host: x.host, method: x.method, path: x.path, status: status, bytes: out,
		duration: d, requestID: x.id, app: x.rt.app, upstream: x.b.addr,
	})
}
