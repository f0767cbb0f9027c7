package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/testenv"
)

// echoServer answers each line with "<name>: <line>" until the client
// closes its side, then closes.
func echoServer(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s: %s\n", name, sc.Text())
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// tcpEdge runs an edge serving TCP on 127.0.0.1 until the test ends.
func tcpEdge(t *testing.T, opts TCPOptions) *Edge {
	t.Helper()
	opts.Host = "127.0.0.1"
	e := New(Options{TCP: opts, DialTimeout: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.ServeTCP(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("ServeTCP: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("ServeTCP did not return after its context ended")
		}
	})
	return e
}

// waitFor polls cond every 5ms until it holds or 5s pass.
func waitTCP(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitOpen(t *testing.T, e *Edge, port int) {
	t.Helper()
	waitTCP(t, fmt.Sprintf("port %d to open", port), func() bool { return e.TCPAddr(port) != nil })
}

// lineConn is a client connection through the edge.
type lineConn struct {
	net.Conn
	r *bufio.Reader
}

func dialEdge(t *testing.T, port int) *lineConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &lineConn{Conn: c, r: bufio.NewReader(c)}
}

// ask sends line and returns the answer without its newline.
func (c *lineConn) ask(line string) (string, error) {
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return "", err
	}
	s, err := c.r.ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

func tcpSnapshot(gen uint64, routes ...TCPRoute) *Snapshot {
	return &Snapshot{Generation: gen, TCP: routes}
}

func TestTCPForwardsAndBalances(t *testing.T) {
	e := tcpEdge(t, TCPOptions{})
	port := testenv.FreePort(t)
	e.Apply(tcpSnapshot(1, TCPRoute{Port: port, App: "game", Backends: []Backend{
		{ID: "a", Addr: echoServer(t, "a")},
		{ID: "b", Addr: echoServer(t, "b")},
	}}))
	waitOpen(t, e, port)

	// Connections held open spread evenly: each goes to the backend with
	// fewer connections.
	seen := map[string]int{}
	for i := range 10 {
		c := dialEdge(t, port)
		got, err := c.ask(fmt.Sprint("hello ", i))
		if err != nil {
			t.Fatal(err)
		}
		name, rest, _ := strings.Cut(got, ": ")
		if rest != fmt.Sprint("hello ", i) {
			t.Fatalf("answer %q", got)
		}
		seen[name]++
	}
	if seen["a"] != 5 || seen["b"] != 5 {
		t.Errorf("connections per backend = %v, want 5 each", seen)
	}
	if e.InFlight("a") != 5 {
		t.Errorf("InFlight(a) = %d, want the 5 open connections", e.InFlight("a"))
	}
}

// TestTCPHalfClose: a client that shuts down its sending side still gets
// everything the backend sends before closing.
func TestTCPHalfClose(t *testing.T) {
	e := tcpEdge(t, TCPOptions{})
	port := testenv.FreePort(t)
	e.Apply(tcpSnapshot(1, TCPRoute{Port: port, App: "game", Backends: []Backend{{ID: "a", Addr: echoServer(t, "a")}}}))
	waitOpen(t, e, port)
	c := dialEdge(t, port)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "one\ntwo\n")
	c.Conn.(*net.TCPConn).CloseWrite()
	all, err := io.ReadAll(c.r)
	if err != nil {
		t.Fatal(err)
	}
	if string(all) != "a: one\na: two\n" {
		t.Errorf("read %q after half-close", all)
	}
	waitTCP(t, "the connection to be uncounted", func() bool { return e.InFlight("a") == 0 })
}

// TestTCPFollowsSnapshots: a backend that leaves the snapshot gets no new
// connection, while the one it has keeps working.
func TestTCPFollowsSnapshots(t *testing.T) {
	e := tcpEdge(t, TCPOptions{})
	port := testenv.FreePort(t)
	a, b := Backend{ID: "a", Addr: echoServer(t, "a")}, Backend{ID: "b", Addr: echoServer(t, "b")}
	e.Apply(tcpSnapshot(1, TCPRoute{Port: port, App: "game", Backends: []Backend{a}}))
	waitOpen(t, e, port)
	old := dialEdge(t, port)
	if got, err := old.ask("x"); err != nil || got != "a: x" {
		t.Fatalf("got %q, %v", got, err)
	}
	e.Apply(tcpSnapshot(2, TCPRoute{Port: port, App: "game", Backends: []Backend{b}}))
	for range 5 {
		if got, err := dialEdge(t, port).ask("y"); err != nil || got != "b: y" {
			t.Fatalf("new connection: got %q, %v; want b", got, err)
		}
	}
	if got, err := old.ask("z"); err != nil || got != "a: z" {
		t.Fatalf("old connection after the swap: got %q, %v", got, err)
	}

	// A snapshot without the port closes its listener.
	e.Apply(tcpSnapshot(3))
	waitTCP(t, "the port to close", func() bool { return e.TCPAddr(port) == nil })
	if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second); err == nil {
		c.Close()
		t.Error("the port still accepts connections")
	}
	if got, err := old.ask("still"); err != nil || got != "a: still" {
		t.Fatalf("old connection after its port closed: got %q, %v", got, err)
	}
}

// TestTCPDrain: Drain waits for a TCP connection like for a request, and
// its deadline closes the connection.
func TestTCPDrain(t *testing.T) {
	e := tcpEdge(t, TCPOptions{})
	port := testenv.FreePort(t)
	e.Apply(tcpSnapshot(1, TCPRoute{Port: port, App: "game", Backends: []Backend{{ID: "a", Addr: echoServer(t, "a")}}}))
	waitOpen(t, e, port)

	t.Run("waits for the connection", func(t *testing.T) {
		c := dialEdge(t, port)
		if _, err := c.ask("x"); err != nil {
			t.Fatal(err)
		}
		drained := make(chan error, 1)
		go func() { drained <- e.Drain(context.Background(), "a") }()
		select {
		case err := <-drained:
			t.Fatalf("Drain returned %v with a connection open", err)
		case <-time.After(100 * time.Millisecond):
		}
		if got, err := c.ask("during drain"); err != nil || got != "a: during drain" {
			t.Fatalf("connection during the drain: %q, %v", got, err)
		}
		c.Close()
		select {
		case err := <-drained:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Drain did not return once the connection closed")
		}
	})
	t.Run("deadline closes the connection", func(t *testing.T) {
		e.Apply(tcpSnapshot(2, TCPRoute{Port: port, App: "game", Backends: []Backend{{ID: "b", Addr: echoServer(t, "b")}}}))
		c := dialEdge(t, port)
		if got, err := c.ask("x"); err != nil || got != "b: x" {
			t.Fatalf("got %q, %v", got, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if err := e.Drain(ctx, "b"); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Drain = %v, want the deadline", err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.r.ReadByte(); err == nil || isTimeoutErr(err) {
			t.Fatalf("read after the drain deadline: %v, want the connection closed", err)
		}
		// A drained backend takes no new connection: the port has none.
		n := dialEdge(t, port)
		if _, err := n.ask("y"); err == nil {
			t.Fatal("a new connection reached a drained backend")
		}
	})
}

func isTimeoutErr(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestTCPPassiveEjection: a backend that refuses connections costs the
// client nothing, another takes it; once its connects failed a few times
// in a row it sits out a cool-down, so new connections stop paying for a
// connect to it, then it is tried again.
func TestTCPPassiveEjection(t *testing.T) {
	const cooldown = time.Second
	logs := &messageCounter{}
	e := New(Options{Logger: slog.New(logs), EjectionCooldown: cooldown, DialTimeout: time.Second,
		TCP: TCPOptions{Host: "127.0.0.1"}})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- e.ServeTCP(ctx) }()
	t.Cleanup(func() { cancel(); <-served })
	port := testenv.FreePort(t)
	dead := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	e.Apply(tcpSnapshot(1, TCPRoute{Port: port, App: "game", Backends: []Backend{
		{ID: "dead", Addr: dead},
		{ID: "a", Addr: echoServer(t, "a")},
	}}))
	waitOpen(t, e, port)
	connect := func(i int) {
		t.Helper()
		c := dialEdge(t, port)
		defer c.Close()
		if got, err := c.ask("x"); err != nil || got != "a: x" {
			t.Fatalf("connection %d: got %q, %v; want the live backend's answer", i, got, err)
		}
	}
	const failed = "tcp upstream connect failed"
	for i := 0; logs.count(failed) < connectFailLimit; i++ {
		if i > 500 {
			t.Fatalf("%d connections made %d connects to the dead backend, want %d", i, logs.count(failed), connectFailLimit)
		}
		connect(i)
	}
	ejected := time.Now()
	if n := logs.count("tcp backend ejected"); n != 1 {
		t.Fatalf("%d ejections logged after %d failed connects in a row, want 1", n, connectFailLimit)
	}
	for i := 0; time.Since(ejected) < cooldown/2; i++ {
		connect(i)
		if n := logs.count(failed); n != connectFailLimit {
			t.Fatalf("connection %d during the cool-down tried the ejected backend (%d failed connects)", i, n)
		}
	}
	// Once the cool-down is over the backend is tried again.
	for i := 0; logs.count(failed) == connectFailLimit; i++ {
		if time.Since(ejected) > cooldown+10*time.Second {
			t.Fatalf("the ejected backend was not tried again %v after its cool-down", 10*time.Second)
		}
		connect(i)
	}
	if d := time.Since(ejected); d < cooldown {
		t.Fatalf("the ejected backend was tried again after %v, within its cool-down of %v", d, cooldown)
	}
}

// messageCounter is a slog handler that counts records by message.
type messageCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (m *messageCounter) Enabled(context.Context, slog.Level) bool { return true }
func (m *messageCounter) WithAttrs([]slog.Attr) slog.Handler       { return m }
func (m *messageCounter) WithGroup(string) slog.Handler            { return m }

func (m *messageCounter) Handle(_ context.Context, r slog.Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.n == nil {
		m.n = map[string]int{}
	}
	m.n[r.Message]++
	return nil
}

func (m *messageCounter) count(msg string) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n[msg]
}

func TestTCPIdleTimeout(t *testing.T) {
	e := tcpEdge(t, TCPOptions{IdleTimeout: 200 * time.Millisecond})
	port := testenv.FreePort(t)
	e.Apply(tcpSnapshot(1, TCPRoute{Port: port, App: "game", Backends: []Backend{{ID: "a", Addr: echoServer(t, "a")}}}))
	waitOpen(t, e, port)
	c := dialEdge(t, port)
	// Traffic keeps the connection open past the timeout...
	for range 6 {
		if _, err := c.ask("x"); err != nil {
			t.Fatalf("busy connection closed: %v", err)
		}
		time.Sleep(60 * time.Millisecond)
	}
	// ...silence ends it.
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.r.ReadByte(); err == nil || isTimeoutErr(err) {
		t.Fatalf("idle connection: %v, want it closed", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("idle connection closed after %s", d)
	}
}

// TestTCPPortInUse: a port another program holds is reported and taken
// once free.
func TestTCPPortInUse(t *testing.T) {
	var mu sync.Mutex
	var events []TCPPortEvent
	e := tcpEdge(t, TCPOptions{RetryInterval: 20 * time.Millisecond, OnPort: func(ev TCPPortEvent) {
		mu.Lock()
		events = append(events, ev)
		mu.Unlock()
	}})
	squatter, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := squatter.Addr().(*net.TCPAddr).Port
	e.Apply(tcpSnapshot(1, TCPRoute{Port: port, App: "game", Backends: []Backend{{ID: "a", Addr: echoServer(t, "a")}}}))
	got := func() []TCPPortEvent {
		mu.Lock()
		defer mu.Unlock()
		return append([]TCPPortEvent(nil), events...)
	}
	waitTCP(t, "the failure report", func() bool { return len(got()) > 0 })
	time.Sleep(100 * time.Millisecond) // several retries
	if evs := got(); len(evs) != 1 || evs[0].Port != port || evs[0].Err == nil || len(evs[0].Apps) != 1 || evs[0].Apps[0] != "game" {
		t.Fatalf("events = %+v, want one failure of port %d for app game", evs, port)
	}
	squatter.Close()
	waitOpen(t, e, port)
	if evs := got(); len(evs) != 2 || evs[1].Err != nil {
		t.Fatalf("events = %+v, want the port reported open", evs)
	}
	if got, err := dialEdge(t, port).ask("x"); err != nil || got != "a: x" {
		t.Fatalf("got %q, %v", got, err)
	}
}

func TestTCPRouteValidation(t *testing.T) {
	s := &Snapshot{TCP: []TCPRoute{
		{Port: 0, App: "a"},
		{Port: 22, App: "b"},
		{Port: 22, App: "c"},
		{Port: 22, SNI: "x.example.com", App: "d"},
		{Port: 443, SNI: "x.example.com", App: "e"},
		{Port: 443, SNI: "X.example.com", App: "f"},
		{Port: 443, App: "g"},
		{Port: 443, SNI: "bad name", App: "h"},
	}}
	err := s.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad TCP routes")
	}
	for _, app := range []string{"a", "c", "d", "f", "g", "h"} {
		if !strings.Contains(err.Error(), fmt.Sprintf("(app %q", app)) {
			t.Errorf("Validate does not report app %s:\n%v", app, err)
		}
	}
	for _, app := range []string{"b", "e"} {
		if strings.Contains(err.Error(), fmt.Sprintf("(app %q", app)) {
			t.Errorf("Validate reports the good route of app %s:\n%v", app, err)
		}
	}
}

// selfSigned makes a certificate for names and a pool trusting it.
func selfSigned(t *testing.T, names ...string) (tls.Certificate, *x509.CertPool) {
	c := testenv.SelfSigned(t, names...)
	return c.TLS, c.Roots
}

// tlsEchoServer terminates TLS with cert and answers each line with
// "<name> saw <server name>: <line>".
func tlsEchoServer(t *testing.T, name string, cert tls.Certificate) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				if err := tc.Handshake(); err != nil {
					return
				}
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s saw %s: %s\n", name, tc.ConnectionState().ServerName, sc.Text())
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestTLSPassthroughBySNI(t *testing.T) {
	certA, poolA := selfSigned(t, "a.example.com")
	certB, poolB := selfSigned(t, "*.b.example.com")
	e := tcpEdge(t, TCPOptions{HelloTimeout: 200 * time.Millisecond})
	port := testenv.FreePort(t)
	e.Apply(tcpSnapshot(1,
		TCPRoute{Port: port, SNI: "a.example.com", App: "a", Backends: []Backend{{ID: "a", Addr: tlsEchoServer(t, "a", certA)}}},
		TCPRoute{Port: port, SNI: "*.b.example.com", App: "b", Backends: []Backend{{ID: "b", Addr: tlsEchoServer(t, "b", certB)}}},
	))
	waitOpen(t, e, port)
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	tests := []struct {
		name string
		sni  string
		pool *x509.CertPool
		want string
	}{
		{"exact", "a.example.com", poolA, "a saw a.example.com: hi"},
		{"exact in upper case", "A.EXAMPLE.COM", poolA, "a saw A.EXAMPLE.COM: hi"},
		{"wildcard", "x.b.example.com", poolB, "b saw x.b.example.com: hi"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := &net.Dialer{Timeout: 2 * time.Second}
			c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: tt.sni, RootCAs: tt.pool})
			if err != nil {
				t.Fatalf("TLS through the edge: %v", err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintln(c, "hi")
			got, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || strings.TrimSpace(got) != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}

	refused := []struct {
		name string
		dial func() error
	}{
		{"unknown name", func() error {
			c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "c.example.com", InsecureSkipVerify: true})
			if err == nil {
				c.Close()
			}
			return err
		}},
		{"wildcard suffix itself", func() error {
			c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "b.example.com", InsecureSkipVerify: true})
			if err == nil {
				c.Close()
			}
			return err
		}},
		{"plain text", func() error {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
			_, err = c.Read(make([]byte, 1))
			return err
		}},
		{"silent client", func() error {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			_, err = c.Read(make([]byte, 1))
			if isTimeoutErr(err) {
				return nil // still open after the hello timeout: a failure
			}
			return err
		}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.dial(); err == nil {
				t.Fatal("the connection was served")
			}
		})
	}
}
