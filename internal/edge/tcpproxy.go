package edge

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// TCPOptions configure the edge's TCP (L4) forwarding. The zero value is
// usable.
type TCPOptions struct {
	// Host is the interface TCP ports listen on: an IP address or a name.
	// Default "": every interface, like the HTTP edge.
	Host string
	// IdleTimeout closes a connection on which neither side sent a byte
	// for this long. Default 1h; a negative value never closes one.
	IdleTimeout time.Duration
	// HelloTimeout bounds reading the TLS ClientHello on a port routed by
	// server name. Default 10s.
	HelloTimeout time.Duration
	// RetryInterval is how often a port that could not be opened (in use
	// by another program) is tried again. Default 5s.
	RetryInterval time.Duration
	// OnPort, if set, hears when a port of the snapshot cannot be opened
	// and when it opens after failing, so the control plane can record an
	// event for the apps on it. It must not block.
	OnPort func(TCPPortEvent)
}

// TCPPortEvent reports a port the edge could not open (Err set), or one
// that opened after failing (Err nil).
type TCPPortEvent struct {
	Port int
	// Apps are the apps routed on the port.
	Apps []string
	Err  error
}

// tcpProxy is the TCP side of an Edge: the compiled table, the open
// listeners, and the connections accepted, so that ServeTCP can end them
// when it returns.
type tcpProxy struct {
	opts        TCPOptions
	dialTimeout time.Duration
	logger      *slog.Logger
	buffers     *bufferPool

	table atomic.Pointer[tcpTable]
	// health is the connect health of every target of table; only apply
	// touches it.
	health map[tcpHealthKey]*health
	// wake tells ServeTCP that a new table was applied.
	wake chan struct{}

	tcpListeners

	// mu guards clients and stopping.
	mu sync.Mutex
	// clients are the accepted connections not yet closed, forwarded or
	// still sending their ClientHello.
	clients map[net.Conn]struct{}
	// stopping is set while ServeTCP shuts down: connections accepted
	// meanwhile are closed at once.
	stopping bool
}

// tcpConn is one forwarded connection: the client's and the upstream's
// side.
type tcpConn struct {
	client, upstream net.Conn
}

func (c *tcpConn) close() {
	c.client.Close()
	c.upstream.Close()
}

func newTCPProxy(opts TCPOptions, dialTimeout time.Duration, logger *slog.Logger) *tcpProxy {
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = time.Hour
	}
	if opts.HelloTimeout <= 0 {
		opts.HelloTimeout = 10 * time.Second
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 5 * time.Second
	}
	p := &tcpProxy{
		opts:        opts,
		dialTimeout: dialTimeout,
		logger:      logger,
		buffers:     newBufferPool(),
		wake:        make(chan struct{}, 1),
		clients:     map[net.Conn]struct{}{},
	}
	p.table.Store(emptyTCPTable())
	return p
}

// apply publishes t, its targets' connect health attached, and wakes the
// listener loop. Edge.Apply calls it, one at a time.
func (p *tcpProxy) apply(t *tcpTable) {
	p.attachHealth(t)
	p.table.Store(t)
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// serveConn forwards one accepted connection on port to a backend of its
// route, then copies bytes both ways until both sides are done.
func (p *tcpProxy) serveConn(c net.Conn, port int) {
	defer c.Close()
	if !p.addClient(c) {
		return
	}
	defer p.removeClient(c)
	log := p.logger.With("port", port, "client", c.RemoteAddr().String())
	tp := p.table.Load().ports[port]
	if tp == nil {
		return // the port left the table while this connection was accepted
	}
	var hello []byte
	var sni string
	if tp.whole == nil {
		c.SetReadDeadline(time.Now().Add(p.opts.HelloTimeout))
		var err error
		hello, sni, err = readClientHello(c)
		c.SetReadDeadline(time.Time{})
		if err != nil {
			log.Debug("tcp connection closed: no usable TLS ClientHello", "err", err)
			return
		}
	}
	tried := map[*backend]bool{}
	var rt *tcpRoute
	for range maxPicks + 4 {
		t := p.table.Load()
		tp := t.ports[port]
		if tp == nil {
			return
		}
		if rt = tp.lookup(sni); rt == nil {
			log.Debug("tcp connection closed: no route for the server name", "sni", sni)
			return
		}
		tg := rt.pick(tried)
		if tg == nil {
			if p.table.Load() != t {
				continue // a newer table may have open backends
			}
			break
		}
		if !tg.b.acquire() {
			continue
		}
		up, err := net.DialTimeout("tcp", tg.addr, p.dialTimeout)
		if err != nil {
			// Nothing was sent yet, so another backend may take it.
			tg.b.done()
			tried[tg.b] = true
			log.Warn("tcp upstream connect failed", "app", rt.app, "backend", tg.b.id, "addr", tg.addr, "err", err)
			p.connectFailed(rt, tg)
			continue
		}
		p.connected(rt, tg)
		p.forward(&tcpConn{client: c, upstream: up}, tg.b, hello)
		return
	}
	app := ""
	if rt != nil {
		app = rt.app
	}
	log.Warn("tcp connection closed: no backend available", "app", app, "sni", sni)
}

// forward copies between the two sides of tc, counted on b, which the
// caller has acquired. The connection ends early when a drain of b
// passes its deadline, which cuts b off.
func (p *tcpProxy) forward(tc *tcpConn, b *backend, hello []byte) {
	stop := context.AfterFunc(b.gone, tc.close)
	defer func() {
		stop()
		tc.close()
		b.done()
	}()
	if len(hello) > 0 {
		// Replay what was read to route the connection: the backend
		// terminates TLS and needs the ClientHello itself.
		if _, err := tc.upstream.Write(hello); err != nil {
			return
		}
	}
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.copyHalf(tc.upstream, tc.client, tc, &last)
	}()
	p.copyHalf(tc.client, tc.upstream, tc, &last)
	<-done
}

// copyHalf copies src to dst until src ends, then half-closes dst, so a
// client that shuts down its sending side still gets the whole answer.
// An error, or no traffic either way for the idle timeout, ends both
// directions.
func (p *tcpProxy) copyHalf(dst, src net.Conn, tc *tcpConn, last *atomic.Int64) {
	buf := p.buffers.Get()
	defer p.buffers.Put(buf)
	idle := p.opts.IdleTimeout
	for {
		if idle > 0 {
			src.SetReadDeadline(time.Now().Add(idle))
		}
		n, err := src.Read(buf)
		if n > 0 {
			last.Store(time.Now().UnixNano())
			if idle > 0 {
				dst.SetWriteDeadline(time.Now().Add(idle))
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				tc.close()
				return
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			closeWrite(dst)
			return
		case timedOut(err) && time.Since(time.Unix(0, last.Load())) < idle:
			// The other direction was busy: the connection is not idle.
		default:
			tc.close()
			return
		}
	}
}

// closeWrite half-closes c where the connection type allows it, and
// closes it otherwise.
func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

func timedOut(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// addClient records an accepted connection, or reports false while
// ServeTCP shuts down.
func (p *tcpProxy) addClient(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopping {
		return false
	}
	p.clients[c] = struct{}{}
	return true
}

func (p *tcpProxy) removeClient(c net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.clients, c)
}

// closeAll closes every accepted connection, and every one accepted
// until setStopping(false).
func (p *tcpProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopping = true
	// Closing the client's side ends a forwarded connection's copying,
	// which closes the upstream's side.
	for c := range p.clients {
		c.Close()
	}
}

func (p *tcpProxy) setStopping(v bool) {
	p.mu.Lock()
	p.stopping = v
	p.mu.Unlock()
}
