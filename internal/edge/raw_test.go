package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// rawTestEdge serves an edge with the raw engine on loopback, with one
// route to an app that echoes what it got, and returns the server and
// its address.
func rawTestEdge(t *testing.T) (*FastServer, string) {
	t.Helper()
	e := New(Options{Logger: quietLogger})
	app := newBackendFunc(t, "app-1", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s %s %s body=%q", r.Proto, r.Method, r.URL.Path, body)
	})
	e.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.test", App: "app", Backends: []Backend{app}}}})
	return serveRawEdge(t, e)
}

// serveRawEdge serves e with the raw engine on loopback until the test
// ends.
func serveRawEdge(t *testing.T, e *Edge) (*FastServer, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := e.NewRawServer()
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		e.Close() // ends upgraded connections too
		if err := <-done; err != nil {
			t.Errorf("raw server: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// exchange writes reqs on one connection to addr and reads n responses.
func rawExchangeOn(t *testing.T, addr, reqs string, n int) []string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, reqs); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	var out []string
	for i := range n {
		res, err := http.ReadResponse(br, nil)
		for err == nil && res.StatusCode == http.StatusContinue {
			res, err = http.ReadResponse(br, nil) // the client sent its body already
		}
		if err != nil {
			t.Fatalf("response %d of %d: %v", i+1, n, err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatalf("body of response %d: %v", i+1, err)
		}
		if res.StatusCode != http.StatusOK {
			t.Fatalf("response %d: %s %s", i+1, res.Status, b)
		}
		out = append(out, string(b))
	}
	return out
}

// TestRawHandOff: what the raw path does not serve itself reaches the
// app through fasthttp, on the same connection, with the bytes the raw
// path had read replayed; what it serves is not handed off.
func TestRawHandOff(t *testing.T) {
	tests := []struct {
		name     string
		reqs     string
		want     []string
		handoffs int64
	}{
		{"GETs stay", "GET /a HTTP/1.1\r\nHost: app.test\r\n\r\nGET /b HTTP/1.1\r\nHost: app.test\r\n\r\n",
			[]string{`HTTP/1.1 GET /a body=""`, `HTTP/1.1 GET /b body=""`}, 0},
		{"POST with a body", "POST /p HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello",
			[]string{`HTTP/1.1 POST /p body="hello"`}, 1},
		{"chunked upload", "PUT /c HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
			[]string{`HTTP/1.1 PUT /c body="abcde"`}, 1},
		{"HTTP/1.0", "GET /old HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n",
			[]string{`HTTP/1.0 GET /old body=""`}, 1},
		{"pipelined GETs then a POST", "GET /1 HTTP/1.1\r\nHost: app.test\r\n\r\nGET /2 HTTP/1.1\r\nHost: app.test\r\n\r\n" +
			"POST /3 HTTP/1.1\r\nHost: app.test\r\nContent-Length: 3\r\n\r\nxyzGET /4 HTTP/1.1\r\nHost: app.test\r\n\r\n",
			[]string{`HTTP/1.1 GET /1 body=""`, `HTTP/1.1 GET /2 body=""`, `HTTP/1.1 POST /3 body="xyz"`, `HTTP/1.1 GET /4 body=""`}, 1},
		{"Expect", "POST /e HTTP/1.1\r\nHost: app.test\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nok",
			[]string{`HTTP/1.1 POST /e body="ok"`}, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, addr := rawTestEdge(t)
			got := rawExchangeOn(t, addr, tc.reqs, len(tc.want))
			for i := range tc.want {
				if got[i] != tc.want[i] {
					t.Errorf("response %d: got %q, want %q", i+1, got[i], tc.want[i])
				}
			}
			if h := s.raw.handoffs.Load(); h != tc.handoffs {
				t.Errorf("%d connections handed to fasthttp, want %d", h, tc.handoffs)
			}
		})
	}
}

// TestRawHandOffWebSocket: an upgrade is handed off and proxied as on
// the fasthttp listener.
func TestRawHandOffWebSocket(t *testing.T) {
	e := New(Options{Logger: quietLogger})
	app := echoUpgradeBackend(t, "ws-1")
	e.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.test", App: "app", Backends: []Backend{app}}}})
	s, addr := serveRawEdge(t, e)
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: app.test\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s", res.Status)
	}
	io.WriteString(c, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "ping\n" {
		t.Fatalf("over the upgraded connection got %q, %v", line, err)
	}
	if h := s.raw.handoffs.Load(); h != 1 {
		t.Errorf("%d connections handed to fasthttp, want 1", h)
	}
}

// TestRawBadRequests: heads the raw path doubts get fasthttp's answer.
func TestRawBadRequests(t *testing.T) {
	for _, req := range []string{
		"GET / HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: " + strings.Repeat("a", fastReadBuffer) + "\r\n\r\n",
	} {
		s, addr := rawTestEdge(t)
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		res, err := http.ReadResponse(bufio.NewReader(c), nil)
		c.Close()
		if err != nil {
			t.Fatalf("%.40q: %v", req, err)
		}
		if res.StatusCode < 400 || res.StatusCode >= 500 {
			t.Errorf("%.40q answered %s, want a client error", req, res.Status)
		}
		if h := s.raw.handoffs.Load(); h != 1 {
			t.Errorf("%.40q: %d connections handed to fasthttp, want 1", req, h)
		}
	}
}

// TestRawResponseFraming: the raw path forwards a response's framing as
// the backend wrote it, so it refuses framing a client could read
// otherwise than the edge did; the client gets a 502 instead.
func TestRawResponseFraming(t *testing.T) {
	for _, tc := range []struct {
		name, head string
		ok         bool
	}{
		{"length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"signed length", "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n", false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", false},
		{"length and chunked", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"gzip coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", false},
	} {
		var r rawResponse
		err := parseResponse([]byte(tc.head), &r)
		if tc.ok != (err == nil) || err != nil && !errors.Is(err, errBadResponse) {
			t.Errorf("%s: parseResponse = %v; want ok %v", tc.name, err, tc.ok)
		}
	}
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"chunks", "5\r\nhello\r\n0\r\n\r\n", true},
		{"extension", "5;x=y\r\nhello\r\n0\r\n\r\n", true},
		{"signed size", "+5\r\nhello\r\n0\r\n\r\n", false},
		{"0x size", "0x5\r\nhello\r\n0\r\n\r\n", false},
	} {
		client, server := net.Pipe()
		go io.Copy(io.Discard, server)
		w := rawBody{src: bufio.NewReader(strings.NewReader(tc.body)), dst: client, b: &backend{gone: context.Background()},
			up: &rawUpstream{c: client, idle: time.Minute}}
		err := w.copyChunked()
		client.Close()
		if tc.ok != (err == nil) {
			t.Errorf("%s: copyChunked = %v; want ok %v", tc.name, err, tc.ok)
		}
	}
}
