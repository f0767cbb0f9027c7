package edge

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"
)

// serveEdge serves e through its own NewServer on loopback, with the
// edge's real client timeouts and limits, and returns its address.
func serveEdge(t *testing.T, e *Edge) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := e.NewServer()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestSlowClients opens 1,000 connections that trickle their headers a
// byte at a time and checks that the edge keeps answering others at once,
// and that it drops the trickling ones when their header time is up.
func TestSlowClients(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 connections")
	}
	e := New(Options{Logger: quietLogger, ReadHeaderTimeout: 2 * time.Second})
	url := "http://" + serveEdge(t, e)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	testSlowClients(t, &testEdge{Edge: e, url: url, client: client})
}

// testSlowClients is TestSlowClients on te, whose listener must have the
// edge's real client timeouts (not httptest's server) and a header
// timeout of 2s; listeners_test.go gives it each listener in turn.
func testSlowClients(t *testing.T, te *testEdge) {
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{newBackend(t, "a")}}}})

	const slow = 1000
	conns := make([]net.Conn, 0, slow)
	for range slow {
		c := te.dial(t)
		conns = append(conns, c)
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: app.localhost\r\nX-Slow: ")
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		// One more byte on every connection now and then: never a whole
		// header, never idle for long.
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				for _, c := range conns {
					c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
					c.Write([]byte("a"))
				}
			}
		}
	})
	defer func() { close(stop); wg.Wait() }()

	for i := range 20 {
		start := time.Now()
		req, _ := http.NewRequest(http.MethodGet, te.url+"/", nil)
		req.Host = "app.localhost"
		res, err := te.client.Do(req)
		if err != nil {
			t.Fatalf("request %d among slow clients: %v", i, err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || string(body) != "a" {
			t.Fatalf("request %d: %d %q, want 200 \"a\"", i, res.StatusCode, body)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("request %d took %v among slow clients, want well under a second", i, d)
		}
	}

	// The header timeout closes the trickling connections, after at most
	// an answer saying so (fasthttp's 408).
	var closed int
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c)
		if !isTimeoutErr(err) {
			closed++
		}
	}
	if closed != slow {
		t.Fatalf("%d of %d slow connections closed after the header timeout", closed, slow)
	}
}
