package edge

import (
	"crypto/tls"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// listeners are the edge's production listeners as a client reaches
// them: fasthttp or the raw engine for plain HTTP/1.1, and net/http on TLS, speaking HTTP/2
// or HTTP/1.1 as ALPN decides. The tests named TestEngines* run on each
// where the behaviour applies; the rest of the package runs on the plain
// net/http listener and again on fasthttp (TestFastPathPassesEdgeTests).
var listeners = []string{"fasthttp", "raw", "tls-h2", "tls-h1"}

// newListenerEdge is newTestEdge behind the given listener: an engine
// name, or "tls-h2" / "tls-h1" for the TLS listener with a client that
// asks for that protocol.
func newListenerEdge(t *testing.T, listener string, opts Options) *testEdge {
	t.Helper()
	h2 := listener == "tls-h2"
	if listener != "tls-h1" && !h2 {
		return newEngineEdge(t, listener, opts)
	}
	if opts.Logger == nil {
		opts.Logger = quietLogger
	}
	e := New(opts)
	addr, roots := serveEdgeTLS(t, e)
	cfg := &tls.Config{RootCAs: roots, NextProtos: []string{"http/1.1"}}
	tr := &http.Transport{TLSClientConfig: cfg, MaxIdleConnsPerHost: 64, ForceAttemptHTTP2: h2}
	if h2 {
		cfg.NextProtos = nil // the transport offers h2 and http/1.1
	} else {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &testEdge{Edge: e, url: "https://" + addr, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// wantProto fails t unless res came over the protocol te's listener
// should speak: a test that meant HTTP/2 must not pass over HTTP/1.1.
func wantProto(t *testing.T, listener string, res *http.Response) {
	t.Helper()
	want := 1
	if listener == "tls-h2" {
		want = 2
	}
	if res.ProtoMajor != want {
		t.Fatalf("the %s listener answered over %s, want HTTP/%d", listener, res.Proto, want)
	}
}

// dial opens a raw connection to te's listener, over TLS with ALPN
// http/1.1 for the TLS listener, for tests that speak HTTP/1.1 by hand.
func (te *testEdge) dial(t *testing.T) net.Conn {
	t.Helper()
	addr, isTLS := strings.CutPrefix(te.url, "https://")
	if !isTLS {
		addr = strings.TrimPrefix(te.url, "http://")
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if isTLS {
		cfg := te.client.Transport.(*http.Transport).TLSClientConfig.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		cfg.ServerName, _, _ = net.SplitHostPort(addr) // the certificate names 127.0.0.1
		tc := tls.Client(c, cfg)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			c.Close()
			t.Fatalf("TLS handshake with the edge: %v", err)
		}
		tc.SetDeadline(time.Time{})
		c = tc
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// The tests below run the list of edge behaviours on each
// production listener; the rest of the package covers the plain net/http
// listener and, through TestFastPathPassesEdgeTests, fasthttp again.

// TestEnginesForwardingHeaders: a client that is no trusted proxy has its
// X-Forwarded-* and Forwarded headers replaced by the edge's, and naming
// them in Connection (HTTP/1.1 only: HTTP/2 has no Connection header, and
// the TLS listener refuses one, see h2guard.go) cannot strip them (Go
// CVE-2021-33197, Traefik CVE-2021-32813).
func TestEnginesForwardingHeaders(t *testing.T) {
	for _, listener := range listeners {
		t.Run(listener, func(t *testing.T) {
			te := newListenerEdge(t, listener, Options{})
			seen := make(chan http.Header, 1)
			app := newBackendFunc(t, "app-1", func(w http.ResponseWriter, r *http.Request) {
				seen <- r.Header.Clone()
			})
			te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.test", App: "app", Backends: []Backend{app}}}})
			h := http.Header{
				"X-Forwarded-For":   {"203.0.113.9"},
				"X-Forwarded-Proto": {"gopher"},
				"X-Forwarded-Host":  {"evil.test"},
				"Forwarded":         {"for=203.0.113.9;proto=gopher"},
				requestIDHeader:     {"bad id with spaces"},
			}
			if listener != "tls-h2" {
				h.Set("Connection", "X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host, Forwarded, X-Request-Id")
			}
			res, _ := te.do(t, http.MethodGet, "app.test", "/", nil, h)
			wantProto(t, listener, res)
			got := <-seen
			proto := "https"
			if listener == "fasthttp" || listener == "raw" {
				proto = "http"
			}
			want := map[string]string{
				"X-Forwarded-For":   "127.0.0.1",
				"X-Forwarded-Proto": proto,
				"X-Forwarded-Host":  "app.test",
				"Forwarded":         `for=127.0.0.1;host=app.test;proto=` + proto,
			}
			for k, v := range want {
				if g := got.Values(k); len(g) != 1 || g[0] != v {
					t.Errorf("app got %s %q, want [%s]", k, g, v)
				}
			}
			if id := got.Get(requestIDHeader); !validRequestID(id) || res.Header.Get(requestIDHeader) != id {
				t.Errorf("request id: app got %q, client got %q; want one the edge made", id, res.Header.Get(requestIDHeader))
			}
		})
	}
}

// TestEnginesUnderLoad: a route swap under load loses no request, a
// rolling deploy's drain neither, and a backend killed under load costs
// at most the non-idempotent requests in flight on it.
func TestEnginesUnderLoad(t *testing.T) {
	for _, listener := range listeners {
		t.Run(listener, func(t *testing.T) {
			t.Run("snapshot swaps", func(t *testing.T) {
				testSnapshotSwapUnderLoad(t, newListenerEdge(t, listener, Options{}))
			})
			t.Run("rolling deploy", func(t *testing.T) {
				testDrainDuringRollingDeploy(t, newListenerEdge(t, listener, Options{}))
			})
			t.Run("backend killed", func(t *testing.T) {
				testBackendKilledUnderLoad(t, newListenerEdge(t, listener, Options{}))
			})
		})
	}
}

// TestEnginesUpgrades: a WebSocket survives unrelated route changes, and
// a drain that runs out of time closes it. Upgrades are HTTP/1.1's, so
// the TLS listener takes them when ALPN chose HTTP/1.1.
func TestEnginesUpgrades(t *testing.T) {
	for _, listener := range []string{"fasthttp", "raw", "tls-h1"} {
		t.Run(listener, func(t *testing.T) {
			t.Run("route change", func(t *testing.T) {
				testUpgradeSurvivesUnrelatedRouteChange(t, newListenerEdge(t, listener, Options{}))
			})
			t.Run("drain deadline", func(t *testing.T) {
				testDrainDeadlineWithUpgradedConnection(t, newListenerEdge(t, listener, Options{}))
			})
		})
	}
}

// TestEnginesSlowClients: 1,000 clients trickling their headers leave the
// edge serving others at once, and are dropped when their header time is
// up. On the TLS listener they trickle after the handshake; the others
// ask over HTTP/2.
func TestEnginesSlowClients(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 connections per listener")
	}
	for _, listener := range []string{"fasthttp", "raw", "tls-h2"} {
		t.Run(listener, func(t *testing.T) {
			testSlowClients(t, newListenerEdge(t, listener, Options{ReadHeaderTimeout: 2 * time.Second}))
		})
	}
}
