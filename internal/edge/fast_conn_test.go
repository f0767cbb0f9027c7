package edge

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// lazyPair returns a lazyConn with the given slack and the peer it talks
// to, over loopback TCP.
func lazyPair(t *testing.T, slack time.Duration) (*lazyConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	c, err := lazyListener{Listener: ln, slack: slack}.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*lazyConn), peer
}

// timedRead reads once and returns when it ended, and its error.
func timedRead(c net.Conn) (time.Time, error) {
	_, err := c.Read(make([]byte, 16))
	return time.Now(), err
}

func TestLazyConnNeverEndsAReadEarly(t *testing.T) {
	c, _ := lazyPair(t, time.Hour)
	// The first deadline is armed; the second, later one is within the
	// slack, so the first stays armed and fires first: the read must
	// wait on until the second.
	c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := timedRead(c); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("first read: %v, want a timeout", err)
	}
	want := time.Now().Add(200 * time.Millisecond)
	c.SetReadDeadline(want)
	at, err := timedRead(c)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("second read: %v, want a timeout", err)
	}
	if at.Before(want) {
		t.Fatalf("the read ended %v before its deadline", want.Sub(at))
	}
}

func TestLazyConnNeverWaitsLonger(t *testing.T) {
	c, _ := lazyPair(t, time.Hour)
	c.SetReadDeadline(time.Now().Add(time.Hour))
	c.mu.Lock()
	c.prepare() // as a read would: the hour is armed
	c.mu.Unlock()
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	done := make(chan error, 1)
	go func() { _, err := timedRead(c); done <- err }()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("read: %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the read still waits 10s after a 50ms deadline")
	}
}

func TestLazyConnDeadlineEndsAWaitingRead(t *testing.T) {
	c, _ := lazyPair(t, time.Hour)
	done := make(chan error, 1)
	go func() { _, err := timedRead(c); done <- err }()
	// Set deadlines until the read is waiting and one ends it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.SetReadDeadline(time.Now())
		select {
		case err := <-done:
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read: %v, want a timeout", err)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("a deadline in the past did not end the waiting read within 10s")
		}
	}
}

func TestLazyConnReadsData(t *testing.T) {
	c, peer := lazyPair(t, time.Second)
	for i := range 3 {
		// An idle deadline each time, as fasthttp sets it, later than the
		// armed one by less than the slack.
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := peer.Write([]byte{byte('a' + i)}); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil || b[0] != byte('a'+i) {
			t.Fatalf("read %d: %q, %v", i, b, err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.armed.IsZero() || c.want.Sub(c.armed) > c.slack {
		t.Fatalf("armed %v for a wanted %v: want the first one kept within the slack", c.armed, c.want)
	}
}
