package edge

import (
	"errors"
	"net"
	"os"
	"sync"
	"time"
)

// Lazy read deadlines for the fasthttp listener's client connections.
//
// fasthttp moves a kept-alive connection's read deadline twice per
// request: to the idle timeout before it waits for the next request, and
// to the header timeout once the request's first byte is in. Each move
// updates a runtime timer. Yet nearly every request arrives whole with
// its first read, so the header deadline is never waited on, and an idle
// deadline armed a few seconds ago serves the next wait as well. A
// lazyConn therefore records the deadline it is given and arms it when a
// read is about to wait:
//
//   - a deadline earlier than the armed one is armed: no read waits
//     longer than asked;
//   - a later one is armed unless the armed one is earlier by at most
//     slack; a read that times out on such an earlier deadline is
//     repeated with the one asked for, so no read ends before its
//     deadline either;
//   - a deadline set while a read waits is armed at once, so that it
//     can end that read.
type lazyConn struct {
	net.Conn
	slack time.Duration

	mu      sync.Mutex
	want    time.Time // the deadline asked for
	armed   time.Time // the deadline set on the connection
	reading bool
}

// lazyListener wraps the connections ln accepts in lazyConns.
type lazyListener struct {
	net.Listener
	slack time.Duration
}

func (l lazyListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &lazyConn{Conn: c, slack: l.slack}, nil
}

func (c *lazyConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.want = t
	if c.reading {
		return c.arm()
	}
	return nil
}

func (c *lazyConn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// arm sets the wanted deadline on the connection. c.mu must be held.
func (c *lazyConn) arm() error {
	if c.armed.Equal(c.want) {
		return nil
	}
	if err := c.Conn.SetReadDeadline(c.want); err != nil {
		return err
	}
	c.armed = c.want
	return nil
}

// prepare arms the wanted deadline unless the armed one may stand in for
// it. c.mu must be held.
func (c *lazyConn) prepare() error {
	switch {
	case c.armed.Equal(c.want):
		return nil
	case c.want.IsZero(), c.armed.IsZero(), c.want.Before(c.armed), c.want.Sub(c.armed) > c.slack:
		return c.arm()
	}
	return nil
}

func (c *lazyConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if err := c.prepare(); err != nil {
		c.mu.Unlock()
		return 0, err
	}
	c.reading = true
	c.mu.Unlock()
	for {
		n, err := c.Conn.Read(p)
		c.mu.Lock()
		if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) && !c.armed.Equal(c.want) {
			// An earlier deadline than asked for ended the read: wait on.
			if aerr := c.arm(); aerr == nil {
				c.mu.Unlock()
				continue
			}
		}
		c.reading = false
		c.mu.Unlock()
		return n, err
	}
}
