package edge

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// quietLogger drops the edge's logs; tests assert on what clients see.
var quietLogger = slog.New(slog.DiscardHandler)

// testEdge is an Edge behind a real HTTP server on loopback, with a
// keep-alive client.
type testEdge struct {
	*Edge
	url    string
	client *http.Client
}

func newTestEdge(t *testing.T, opts Options) *testEdge {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = quietLogger
	}
	e := New(opts)
	url := serveTestEdge(t, e, testEngine())
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	t.Cleanup(tr.CloseIdleConnections)
	return &testEdge{Edge: e, url: url, client: &http.Client{Transport: tr, Timeout: 20 * time.Second}}
}

// do sends a request for host and path through the edge.
func (te *testEdge) do(t *testing.T, method, host, path string, body io.Reader, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, te.url+path, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	for k, vs := range header {
		req.Header[k] = vs
	}
	res, err := te.client.Do(req)
	if err != nil {
		t.Fatalf("%s http://%s%s: %v", method, host, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("read body of %s http://%s%s: %v", method, host, path, err)
	}
	return res, string(b)
}

func (te *testEdge) get(t *testing.T, host, path string) (*http.Response, string) {
	t.Helper()
	return te.do(t, http.MethodGet, host, path, nil, nil)
}

// newBackend starts an app instance on loopback whose answers name it, and
// returns it as a Backend with that name as ID.
func newBackend(t *testing.T, name string) Backend {
	t.Helper()
	return newBackendFunc(t, name, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, name)
	})
}

func newBackendFunc(t *testing.T, name string, h http.HandlerFunc) Backend {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return Backend{ID: name, Addr: srv.Listener.Addr().String(), Release: 1}
}

func TestRouting(t *testing.T) {
	te := newTestEdge(t, Options{})
	hello := newBackend(t, "hello-1")
	api := newBackend(t, "api-1")
	apps := newBackend(t, "apps-1")
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{
		{Host: "hello.localhost", App: "hello", Backends: []Backend{hello}},
		{Host: "hello.localhost", PathPrefix: "/api", App: "api", Backends: []Backend{api}},
		{Host: "*.apps.localhost", App: "apps", Backends: []Backend{apps}},
		{Host: "empty.localhost", App: "empty"},
	}})
	tests := []struct {
		name, host, path string
		status           int
		body             string // a part of the body
	}{
		{"exact host", "hello.localhost", "/", 200, "hello-1"},
		{"exact host with port", "hello.localhost:8080", "/x", 200, "hello-1"},
		{"path prefix", "hello.localhost", "/api/v1", 200, "api-1"},
		{"wildcard", "a.b.apps.localhost", "/", 200, "apps-1"},
		{"unknown host", "nope.localhost", "/", 404, `skiff: no app serves host "nope.localhost"`},
		{"no backends", "empty.localhost", "/", 503, `skiff: app "empty" has no ready instance`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, body := te.get(t, tc.host, tc.path)
			if res.StatusCode != tc.status || !strings.Contains(body, tc.body) {
				t.Fatalf("GET http://%s%s = %d %q, want %d containing %q", tc.host, tc.path, res.StatusCode, body, tc.status, tc.body)
			}
			if tc.status == 503 && res.Header.Get("Retry-After") != "1" {
				t.Errorf("503 has Retry-After %q, want \"1\"", res.Header.Get("Retry-After"))
			}
			if res.Header.Get("X-Request-Id") == "" {
				t.Errorf("response has no X-Request-Id")
			}
		})
	}
}

func TestNewEdgeServesNothing(t *testing.T) {
	te := newTestEdge(t, Options{})
	if g := te.Generation(); g != 0 {
		t.Fatalf("Generation of a new edge = %d, want 0", g)
	}
	if res, _ := te.get(t, "hello.localhost", "/"); res.StatusCode != 404 {
		t.Fatalf("status before any snapshot = %d, want 404", res.StatusCode)
	}
}

func TestApplyIgnoresOlderGeneration(t *testing.T) {
	te := newTestEdge(t, Options{})
	a, b := newBackend(t, "a"), newBackend(t, "b")
	snap := func(gen uint64, be Backend) *Snapshot {
		return &Snapshot{Generation: gen, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{be}}}}
	}
	steps := []struct {
		name    string
		snap    *Snapshot
		wantGen uint64
		want    string
	}{
		{"first", snap(5, a), 5, "a"},
		{"older is ignored", snap(4, b), 5, "a"},
		{"same generation replaces", snap(5, b), 5, "b"},
		{"newer applies", snap(6, a), 6, "a"},
		{"nil is ignored", nil, 6, "a"},
	}
	for _, st := range steps {
		te.Apply(st.snap)
		if g := te.Generation(); g != st.wantGen {
			t.Fatalf("%s: Generation = %d, want %d", st.name, g, st.wantGen)
		}
		if _, body := te.get(t, "app.localhost", "/"); body != st.want {
			t.Fatalf("%s: served by %q, want %q", st.name, body, st.want)
		}
	}
}

func TestApplySkipsInvalidRoutes(t *testing.T) {
	te := newTestEdge(t, Options{})
	a := newBackend(t, "a")
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{
		{Host: "bad host", App: "bad", Backends: []Backend{a}},
		{Host: "good.localhost", App: "good", Backends: []Backend{a}},
	}})
	if res, body := te.get(t, "good.localhost", "/"); res.StatusCode != 200 || body != "a" {
		t.Fatalf("valid route next to an invalid one = %d %q, want 200 \"a\"", res.StatusCode, body)
	}
}

func TestRequestID(t *testing.T) {
	te := newTestEdge(t, Options{})
	upstream := make(chan []string, 1)
	be := newBackendFunc(t, "b", func(w http.ResponseWriter, r *http.Request) {
		upstream <- r.Header.Values("X-Request-Id")
		w.Header().Set("X-Request-Id", "set-by-app") // the edge's id must win
	})
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{be}}}})

	long := strings.Repeat("a", 129)
	tests := []struct {
		name string
		in   []string
		keep bool
	}{
		{"none", nil, false},
		{"sane token kept", []string{"abc-123_X.y"}, true},
		{"128 chars kept", []string{strings.Repeat("a", 128)}, true},
		{"too long", []string{long}, false},
		{"bad characters", []string{"a b<script>"}, false},
		{"empty", []string{""}, false},
		{"two values", []string{"a", "b"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			if tc.in != nil {
				h["X-Request-Id"] = tc.in
			}
			res, _ := te.do(t, http.MethodGet, "app.localhost", "/", nil, h)
			up := <-upstream
			got := res.Header.Values("X-Request-Id")
			if len(up) != 1 || len(got) != 1 || up[0] != got[0] {
				t.Fatalf("upstream saw %q, client got %q: want one and the same id", up, got)
			}
			if tc.keep && got[0] != tc.in[0] {
				t.Fatalf("id = %q, want the client's %q", got[0], tc.in[0])
			}
			if !tc.keep && (!validRequestID(got[0]) || len(got[0]) != 32 || slicesContain(tc.in, got[0])) {
				t.Fatalf("id = %q, want a fresh 32-character id", got[0])
			}
		})
	}
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// syncBuffer is a log sink safe for the edge's request goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestBadGateway(t *testing.T) {
	var logs syncBuffer
	te := newTestEdge(t, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	// A listener closed at once leaves a loopback port nobody answers on.
	dead := httptest.NewServer(http.NotFoundHandler())
	addr := dead.Listener.Addr().String()
	dead.Close()
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{{ID: "i-dead", Addr: addr}}}}})

	res, body := te.get(t, "app.localhost", "/orders?token=secret")
	id := res.Header.Get("X-Request-Id")
	if res.StatusCode != 502 || !strings.Contains(body, `skiff: app "app" did not answer`) || !strings.Contains(body, id) {
		t.Fatalf("dead backend = %d %q, want 502 naming the app and request id %q", res.StatusCode, body, id)
	}
	log := logs.String()
	for _, want := range []string{"upstream request failed", "app=app", "backend=i-dead", "request_id=" + id} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "secret") {
		t.Errorf("log holds the query string:\n%s", log)
	}
	if n := te.InFlight("i-dead"); n != 0 {
		t.Errorf("InFlight after a failed request = %d, want 0", n)
	}
}

func TestConnectRefused(t *testing.T) {
	te := newTestEdge(t, Options{})
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{newBackend(t, "a")}}}})
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodConnect, "http://app.localhost/", nil)
	req.Host = "app.localhost:443"
	te.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("CONNECT = %d, want 405", rec.Code)
	}
}

// TestSnapshotSwapUnderLoad swaps between two sets of live backends while
// clients send requests: every request must be answered by one of them.
func TestSnapshotSwapUnderLoad(t *testing.T) { testSnapshotSwapUnderLoad(t, newTestEdge(t, Options{})) }

// testSnapshotSwapUnderLoad is the test on te, which listeners_test.go gives
// each listener in turn.
func testSnapshotSwapUnderLoad(t *testing.T, te *testEdge) {
	sets := [2][]Backend{
		{newBackend(t, "a"), newBackend(t, "b")},
		{newBackend(t, "c"), newBackend(t, "d")},
	}
	snap := func(gen uint64) *Snapshot {
		return &Snapshot{Generation: gen, Routes: []Route{{Host: "app.localhost", App: "app", Backends: sets[gen%2]}}}
	}
	te.Apply(snap(1))

	const workers, perWorker, swaps = 4, 5000, 100
	var done, failures atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range workers {
		wg.Go(func() {
			for range perWorker {
				select {
				case <-stop:
					return
				default:
				}
				if err := fetchOK(te, "app.localhost", "abcd"); err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				done.Add(1)
			}
		})
	}
	// Swap only after a few requests went through on the current table, so
	// the swaps and the load overlap whatever the machine's speed.
	gen := uint64(1)
	for range swaps {
		waitFor(t, 10*time.Second, func() bool { return done.Load() >= int64(gen)*4 }, "requests to complete")
		gen++
		te.Apply(snap(gen))
	}
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed during snapshot swaps; first: %v", n, done.Load(), firstErr.Load())
	}
	// Once Apply returns, new requests see only the new table.
	want := sets[gen%2]
	for range 20 {
		if _, body := te.get(t, "app.localhost", "/"); body != want[0].ID && body != want[1].ID {
			t.Fatalf("after the last swap served by %q, want %s or %s", body, want[0].ID, want[1].ID)
		}
	}
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

// fetchOK sends one request and checks it was answered 200 by a backend
// whose name is one of the letters in names.
func fetchOK(te *testEdge, host, names string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, te.url+"/", nil)
	req.Host = host
	res, err := te.client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode != 200 || len(b) != 1 || !strings.Contains(names, string(b)) {
		return fmt.Errorf("got %d %q", res.StatusCode, b)
	}
	return nil
}
