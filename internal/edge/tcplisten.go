package edge

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"
)

// ServeTCP opens a listener on every TCP port of the applied snapshot,
// closes those the snapshot drops, and forwards each accepted connection,
// until ctx ends; then it closes the listeners and every forwarded
// connection and returns once their goroutines have ended. A port that
// cannot be opened is logged, reported to TCPOptions.OnPort and tried
// again every RetryInterval. Closing a port's listener leaves its open
// connections alone: they end on their own or when their backend is
// drained.
func (e *Edge) ServeTCP(ctx context.Context) error {
	return e.tcp.serve(ctx)
}

// TCPAddr returns the address the listener of port is bound to, or nil
// when the port is not open (yet).
func (e *Edge) TCPAddr(port int) net.Addr {
	e.tcp.lnMu.Lock()
	defer e.tcp.lnMu.Unlock()
	if l := e.tcp.listeners[port]; l != nil {
		return l.Addr()
	}
	return nil
}

// tcpListeners are the open listeners of a tcpProxy, by port, and the
// ports that failed to open with their last error.
type tcpListeners struct {
	lnMu      sync.Mutex
	listeners map[int]net.Listener
	failing   map[int]string
}

func (p *tcpProxy) serve(ctx context.Context) error {
	p.lnMu.Lock()
	if p.listeners != nil {
		p.lnMu.Unlock()
		return errors.New("serve tcp: already serving")
	}
	p.listeners, p.failing = map[int]net.Listener{}, map[int]string{}
	p.lnMu.Unlock()
	p.setStopping(false)

	var wg sync.WaitGroup
	defer func() {
		p.lnMu.Lock()
		for port, l := range p.listeners {
			l.Close()
			delete(p.listeners, port)
		}
		p.lnMu.Unlock()
		p.closeAll()
		wg.Wait()
		p.lnMu.Lock()
		p.listeners = nil
		p.lnMu.Unlock()
	}()
	retry := time.NewTicker(p.opts.RetryInterval)
	defer retry.Stop()
	for {
		p.reconcile(&wg)
		select {
		case <-ctx.Done():
			return nil
		case <-p.wake:
		case <-retry.C:
		}
	}
}

// reconcile makes the open listeners match the ports of the table.
func (p *tcpProxy) reconcile(wg *sync.WaitGroup) {
	t := p.table.Load()
	p.lnMu.Lock()
	defer p.lnMu.Unlock()
	for port, l := range p.listeners {
		if _, ok := t.ports[port]; !ok {
			l.Close()
			delete(p.listeners, port)
			p.logger.Info("tcp port closed", "port", port)
		}
	}
	for port := range p.failing {
		if _, ok := t.ports[port]; !ok {
			delete(p.failing, port)
		}
	}
	for port := range t.ports {
		if p.listeners[port] != nil {
			continue
		}
		addr := net.JoinHostPort(p.opts.Host, strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			// Reported when it first fails or fails differently, not on
			// every retry.
			if p.failing[port] != err.Error() {
				p.failing[port] = err.Error()
				p.logger.Warn("tcp port cannot be opened; retrying", "port", port, "addr", addr, "apps", t.apps(port), "err", err)
				p.report(TCPPortEvent{Port: port, Apps: t.apps(port), Err: err})
			}
			continue
		}
		if _, failed := p.failing[port]; failed {
			delete(p.failing, port)
			p.report(TCPPortEvent{Port: port, Apps: t.apps(port)})
		}
		p.listeners[port] = l
		p.logger.Info("tcp port open", "port", port, "addr", l.Addr().String(), "apps", t.apps(port))
		wg.Go(func() { p.accept(l, port, wg) })
	}
}

func (p *tcpProxy) report(ev TCPPortEvent) {
	if p.opts.OnPort != nil {
		p.opts.OnPort(ev)
	}
}

// accept serves l until it is closed.
func (p *tcpProxy) accept(l net.Listener, port int, wg *sync.WaitGroup) {
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off as
			// net/http does, instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			p.logger.Warn("tcp accept failed; retrying", "port", port, "err", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		wg.Go(func() { p.serveConn(c, port) })
	}
}
