package edge

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// engineEnv makes every edge test that uses newTestEdge run against the
// fasthttp listener instead of the net/http one; TestFastPathPassesEdgeTests
// sets it for a second run of the package's tests.
const engineEnv = "SKIFF_EDGE_TEST_ENGINE"

// engines are the listeners the edge can serve plain HTTP with.
var engines = []string{"nethttp", "fasthttp", "raw"}

func testEngine() string {
	if e := os.Getenv(engineEnv); e == "fasthttp" || e == "raw" {
		return e
	}
	return "nethttp"
}

// serveTestEdge serves e on loopback with engine and returns its URL.
func serveTestEdge(t testing.TB, e *Edge, engine string) string {
	t.Helper()
	if engine != "fasthttp" && engine != "raw" {
		srv := httptest.NewServer(e)
		t.Cleanup(srv.Close)
		return srv.URL
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fs := e.NewFastServer()
	if engine == "raw" {
		fs = e.NewRawServer()
	}
	done := make(chan error, 1)
	go func() { done <- fs.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		fs.Shutdown(ctx)
		ln.Close()
		if err := <-done; err != nil {
			t.Errorf("fast server: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// TestFastPathPassesEdgeTests runs every other test of the package again
// with the edge behind the fasthttp listener, and again behind the raw
// engine: the listeners must behave alike wherever a client can tell.
func TestFastPathPassesEdgeTests(t *testing.T) {
	if testEngine() != "nethttp" {
		t.Skip("already a run on another engine")
	}
	if testing.Short() {
		t.Skip("-short: the fasthttp and raw runs of the edge tests are skipped")
	}
	for _, engine := range []string{"fasthttp", "raw"} {
		t.Run(engine, func(t *testing.T) {
			// Tests of the TLS listener (h2spec), TCP forwarding and fuzz
			// seeds do not touch the plain listener: once is enough for
			// them.
			skip := "^TestFastPathPassesEdgeTests$|^TestEngines|H2Spec|^TestTCP|^TestTLS|^TestSNI|^Fuzz"
			args := []string{"-test.run", ".", "-test.skip", skip, "-test.count", "1"}
			if testing.Verbose() {
				args = append(args, "-test.v")
			}
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(os.Environ(), engineEnv+"="+engine)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("edge tests against the %s listener: %v\n%s", engine, err, out)
			}
			if testing.Verbose() {
				t.Logf("%s", out)
			}
		})
	}
}

// newEngineEdge is newTestEdge on the given engine.
func newEngineEdge(t *testing.T, engine string, opts Options) *testEdge {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger
	}
	e := New(opts)
	url := serveTestEdge(t, e, engine)
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &testEdge{Edge: e, url: url, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}
}

// TestEnginesHopByHop checks, on both listeners, that hop-by-hop headers
// and those a client names in Connection never reach the app, while the
// headers the edge sets do, whatever Connection says (Go CVE-2021-33197,
// Traefik CVE-2021-32813).
func TestEnginesHopByHop(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			te := newEngineEdge(t, engine, Options{})
			seen := make(chan http.Header, 1)
			app := newBackendFunc(t, "app-1", func(w http.ResponseWriter, r *http.Request) {
				seen <- r.Header.Clone()
				w.Header().Set("Keep-Alive", "timeout=5")
				w.Header().Set("Connection", "X-Secret-Upstream")
				w.Header().Set("X-Secret-Upstream", "leak")
				io.WriteString(w, "ok")
			})
			te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.test", App: "app", Backends: []Backend{app}}}})
			res, body := te.do(t, http.MethodGet, "app.test", "/", nil, http.Header{
				"Connection":        {"keep-alive, X-Forwarded-For, X-Forwarded-Proto, X-Request-Id, Forwarded, X-Custom"},
				"X-Custom":          {"gone"},
				"X-Kept":            {"kept"},
				"Keep-Alive":        {"timeout=1"},
				"Proxy-Connection":  {"keep-alive"},
				"X-Forwarded-For":   {"203.0.113.9"},
				"X-Forwarded-Proto": {"https"},
				"Forwarded":         {"for=203.0.113.9"},
			})
			if res.StatusCode != http.StatusOK || body != "ok" {
				t.Fatalf("got %d %q", res.StatusCode, body)
			}
			h := <-seen
			for _, k := range []string{"X-Custom", "Keep-Alive", "Proxy-Connection"} {
				if v := h.Values(k); len(v) > 0 {
					t.Errorf("app got %s: %q; hop-by-hop headers must not pass", k, v)
				}
			}
			if got := h.Get("X-Kept"); got != "kept" {
				t.Errorf("X-Kept = %q, want kept", got)
			}
			if got := h.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
				t.Errorf("X-Forwarded-For = %q, want [127.0.0.1]", got)
			}
			if got := h.Get("X-Forwarded-Proto"); got != "http" {
				t.Errorf("X-Forwarded-Proto = %q, want http", got)
			}
			if got := h.Get("X-Forwarded-Host"); got != "app.test" {
				t.Errorf("X-Forwarded-Host = %q, want app.test", got)
			}
			if got := h.Get("Forwarded"); !strings.Contains(got, "for=127.0.0.1") || strings.Contains(got, "203.0.113.9") {
				t.Errorf("Forwarded = %q, want the edge's own element only", got)
			}
			id := h.Get(requestIDHeader)
			if !validRequestID(id) || res.Header.Get(requestIDHeader) != id {
				t.Errorf("request id: app got %q, client got %q", id, res.Header.Get(requestIDHeader))
			}
			for _, k := range []string{"Keep-Alive", "X-Secret-Upstream"} {
				if v := res.Header.Values(k); len(v) > 0 {
					t.Errorf("client got %s: %q; the app's hop-by-hop headers must not pass", k, v)
				}
			}
		})
	}
}

// TestEnginesStreamBothWays sends 64 MiB through each listener to an app
// that answers with 64 MiB, and proves both directions stream: the app
// sees the first MiB while the client still holds the rest back, and the
// client sees the first MiB of the answer while the app still holds the
// rest.
func TestEnginesStreamBothWays(t *testing.T) {
	const size = 64 << 20
	const chunk = 1 << 20
	want := sha256.New()
	io.Copy(want, &patternReader{n: size})
	wantSum := want.Sum(nil)
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			te := newEngineEdge(t, engine, Options{})
			appGotFirst := make(chan struct{})
			clientGotFirst := make(chan struct{})
			app := newBackendFunc(t, "big-1", func(w http.ResponseWriter, r *http.Request) {
				buf := make([]byte, chunk)
				if _, err := io.ReadFull(r.Body, buf); err != nil {
					t.Errorf("app: read first MiB: %v", err)
					return
				}
				close(appGotFirst)
				h := sha256.New()
				h.Write(buf)
				if n, err := io.CopyBuffer(h, r.Body, buf); err != nil || n+chunk != size {
					t.Errorf("app: read %d bytes of the body (%v), want %d", n+chunk, err, size)
				}
				if !bytes.Equal(h.Sum(nil), wantSum) {
					t.Errorf("app: the body differs from what the client sent")
				}
				w.Header().Set("Content-Type", "application/octet-stream")
				answer := &patternReader{n: size, holdAt: chunk, release: clientGotFirst}
				io.CopyN(w, answer, chunk)
				http.NewResponseController(w).Flush()
				if _, err := io.Copy(w, answer); err != nil {
					t.Errorf("app: write answer: %v", err)
				}
			})
			te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "big.test", App: "big", Backends: []Backend{app}}}})

			req, err := http.NewRequest(http.MethodPost, te.url+"/", &patternReader{n: size, holdAt: chunk, release: appGotFirst})
			if err != nil {
				t.Fatal(err)
			}
			req.Host = "big.test"
			req.ContentLength = -1 // chunked: the edge cannot know the size up front
			res, err := te.client.Do(req)
			if err != nil {
				t.Fatalf("POST: %v", err)
			}
			defer res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b, _ := io.ReadAll(res.Body)
				t.Fatalf("POST: %d %s", res.StatusCode, b)
			}
			first := make([]byte, chunk)
			if _, err := io.ReadFull(res.Body, first); err != nil {
				t.Fatalf("read first MiB: %v", err)
			}
			close(clientGotFirst)
			h := sha256.New()
			h.Write(first)
			n, err := io.Copy(h, res.Body)
			if err != nil {
				t.Fatalf("read answer: %v", err)
			}
			if n+chunk != size || !bytes.Equal(h.Sum(nil), wantSum) {
				t.Fatalf("answer: %d bytes, want %d of the app's pattern", n+chunk, size)
			}
		})
	}
}

// patternReader yields n bytes of a fixed pattern; with release set, it
// stops after holdAt bytes until release is closed.
type patternReader struct {
	n, off  int64
	holdAt  int64
	release chan struct{}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	if p.release != nil && p.off == p.holdAt {
		select {
		case <-p.release:
		case <-time.After(20 * time.Second):
			return 0, fmt.Errorf("held back after %d bytes for 20s: the other side never saw them, so the edge buffers", p.holdAt)
		}
	}
	end := min(p.n, p.off+int64(len(b)))
	if p.release != nil && p.off < p.holdAt {
		end = min(end, p.holdAt)
	}
	for i := p.off; i < end; i++ {
		b[i-p.off] = byte(i * 7)
	}
	k := int(end - p.off)
	p.off = end
	return k, nil
}

// TestEnginesHead checks that a HEAD request through either listener
// gets the app's headers and no body, and leaves the connection usable.
func TestEnginesHead(t *testing.T) {
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			te := newEngineEdge(t, engine, Options{})
			app := newBackendFunc(t, "app-1", func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "100000")
				if r.Method != http.MethodHead {
					w.Write(make([]byte, 100000))
				}
			})
			te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.test", App: "app", Backends: []Backend{app}}}})
			for range 3 {
				res, body := te.do(t, http.MethodHead, "app.test", "/", nil, nil)
				if res.StatusCode != http.StatusOK || body != "" || res.ContentLength != 100000 {
					t.Fatalf("HEAD: %d, length %d, body %q", res.StatusCode, res.ContentLength, body)
				}
				res, body = te.get(t, "app.test", "/")
				if res.StatusCode != http.StatusOK || len(body) != 100000 {
					t.Fatalf("GET: %d, %d bytes", res.StatusCode, len(body))
				}
			}
			// The count ends once the body is written, which may be a
			// moment after the client has read it.
			deadline := time.Now().Add(5 * time.Second)
			for te.InFlight("app-1") != 0 {
				if time.Now().After(deadline) {
					t.Fatalf("still %d in flight 5s after the responses", te.InFlight("app-1"))
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// TestEnginesKeepRequestTarget checks that the app gets the request
// target exactly as the client sent it, encoded slashes, dot segments
// and query included, on either listener.
func TestEnginesKeepRequestTarget(t *testing.T) {
	targets := []string{"/plain", "/a%2Fb/./c/../d?q=1&r=%20", "/%7Euser/x", "/sp%20ace/", "/?only=query"}
	for _, engine := range engines {
		t.Run(engine, func(t *testing.T) {
			te := newEngineEdge(t, engine, Options{})
			seen := make(chan string, 1)
			app := newBackendFunc(t, "app-1", func(w http.ResponseWriter, r *http.Request) {
				seen <- r.RequestURI
			})
			te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.test", App: "app", Backends: []Backend{app}}}})
			c, err := net.Dial("tcp", strings.TrimPrefix(te.url, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for _, target := range targets {
				fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: app.test\r\n\r\n", target)
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("GET %s: %v", target, err)
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					t.Fatalf("GET %s: %s", target, res.Status)
				}
				if got := <-seen; got != target {
					t.Errorf("GET %s reached the app as %s", target, got)
				}
			}
		})
	}
}
