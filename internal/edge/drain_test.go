package edge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// abruptBackend is an app instance that can vanish at once, listener and
// every connection, the way a process does when it exits on SIGTERM.
type abruptBackend struct {
	Backend
	srv    *http.Server
	served atomic.Int64
}

func startAbruptBackend(t *testing.T, id string) *abruptBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ab := &abruptBackend{Backend: Backend{ID: id, Addr: ln.Addr().String(), Release: 1}}
	ab.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return
		}
		// A little work, so requests overlap and a drain has some to wait for.
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond)
		ab.served.Add(1)
		fmt.Fprintf(w, "%s %s", id, body)
	})}
	go ab.srv.Serve(ln)
	t.Cleanup(func() { ab.srv.Close() })
	return ab
}

// TestDrainDuringRollingDeploy is the deploy the edge exists for: under
// continuous keep-alive load on a pool of two instances, each round takes
// the older instance out of the snapshot, drains it, kills it abruptly and
// adds a fresh one. No request may fail.
func TestDrainDuringRollingDeploy(t *testing.T) {
	testDrainDuringRollingDeploy(t, newTestEdge(t, Options{}))
}

// testDrainDuringRollingDeploy is the test on te, which listeners_test.go gives
// each listener in turn.
func testDrainDuringRollingDeploy(t *testing.T, te *testEdge) {
	var gen uint64
	apply := func(bs ...*abruptBackend) {
		gen++
		s := &Snapshot{Generation: gen, Routes: []Route{{Host: "app.localhost", App: "app"}}}
		for _, b := range bs {
			s.Routes[0].Backends = append(s.Routes[0].Backends, b.Backend)
		}
		te.Apply(s)
	}
	pool := []*abruptBackend{startAbruptBackend(t, "i0"), startAbruptBackend(t, "i1")}
	apply(pool...)

	const workers, maxPerWorker, rounds = 8, 20000, 20
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range maxPerWorker {
				select {
				case <-stop:
					return
				default:
				}
				// POST half the time: the upstream transport never retries
				// it, so a request lost to a dying instance shows as a failure.
				method := http.MethodGet
				if i%2 == 0 {
					method = http.MethodPost
				}
				if err := rollingRequest(te, method, fmt.Sprintf("w%d-%d", w, i)); err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
				}
				sent.Add(1)
			}
		})
	}

	busyAtRemoval := 0
	for round := range rounds {
		old := pool[0]
		// Let both instances carry a good share of requests, and catch the
		// old one busy, so the drain has work to wait for.
		target := sent.Load() + 100
		waitFor(t, 20*time.Second, func() bool { return sent.Load() >= target && te.InFlight(old.ID) > 0 }, "load on "+old.ID)
		apply(pool[1])
		if te.InFlight(old.ID) > 0 {
			busyAtRemoval++
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := te.Drain(ctx, old.ID)
		cancel()
		if err != nil {
			t.Fatalf("round %d: Drain(%s): %v", round, old.ID, err)
		}
		if n := te.InFlight(old.ID); n != 0 {
			t.Fatalf("round %d: InFlight(%s) after Drain = %d, want 0", round, old.ID, n)
		}
		old.srv.Close() // the app exits the instant it is told to
		next := startAbruptBackend(t, fmt.Sprintf("i%d", round+2))
		pool = []*abruptBackend{pool[1], next}
		apply(pool...)
	}
	waitFor(t, 10*time.Second, func() bool { return pool[1].served.Load() > 0 }, "load on the last instance")
	close(stop)
	wg.Wait()

	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed across %d rolling rounds; first: %v", n, sent.Load(), rounds, firstErr.Load())
	}
	t.Logf("%d requests, %d of %d drains had requests in flight when the instance left the snapshot", sent.Load(), busyAtRemoval, rounds)
	for _, b := range pool {
		if te.pool.get(b.ID) == nil {
			t.Errorf("live backend %s missing from the pool", b.ID)
		}
	}
	te.pool.mu.Lock()
	n := len(te.pool.byID)
	te.pool.mu.Unlock()
	if n != 2 {
		t.Errorf("pool holds %d backends after %d rounds, want the 2 live ones", n, rounds)
	}
}

// rollingRequest sends one request with a unique body and checks the
// instance echoed it.
func rollingRequest(te *testEdge, method, tag string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var body io.Reader
	if method == http.MethodPost {
		body = strings.NewReader(tag)
	}
	req, _ := http.NewRequestWithContext(ctx, method, te.url+"/", body)
	req.Host = "app.localhost"
	res, err := te.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, tag, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read body: %w", method, tag, err)
	}
	want := ""
	if method == http.MethodPost {
		want = " " + tag
	}
	if res.StatusCode != 200 || !strings.HasSuffix(string(b), want) || !strings.HasPrefix(string(b), "i") {
		return fmt.Errorf("%s %s: got %d %q", method, tag, res.StatusCode, b)
	}
	return nil
}

func TestDrainUnknownBackend(t *testing.T) {
	te := newTestEdge(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // nil must come at once, not from waiting
	if err := te.Drain(ctx, "nobody"); err != nil {
		t.Fatalf("Drain of an unknown backend = %v, want nil", err)
	}
	if n := te.InFlight("nobody"); n != 0 {
		t.Fatalf("InFlight of an unknown backend = %d", n)
	}
}

// holdingBackend holds each request until release is closed.
func holdingBackend(t *testing.T, id string, entered chan<- struct{}, release <-chan struct{}) Backend {
	return newBackendFunc(t, id, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, id)
	})
}

// TestDrainWaitsForInFlight drains a backend that is still in the
// snapshot: Drain must wait for its held request, send every new request
// elsewhere meanwhile, and keep it out even when a later snapshot still
// lists it.
func TestDrainWaitsForInFlight(t *testing.T) {
	te := newTestEdge(t, Options{})
	entered := make(chan struct{}, 4)
	release := make(chan struct{})
	a := holdingBackend(t, "a", entered, release)
	b := newBackend(t, "b")
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	snap := &Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{a}}}}
	te.Apply(snap)

	held := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, te.url+"/", nil)
		req.Host = "app.localhost"
		res, err := te.client.Do(req)
		if err != nil {
			held <- err.Error()
			return
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		held <- string(body)
	}()
	<-entered
	te.Apply(&Snapshot{Generation: 2, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{a, b}}}})

	drained := make(chan error, 1)
	go func() { drained <- te.Drain(context.Background(), "a") }()
	waitFor(t, 10*time.Second, func() bool { return te.pool.get("a").draining.Load() }, "Drain to mark a draining")
	for i := range 10 {
		if _, body := te.get(t, "app.localhost", "/"); body != "b" {
			t.Fatalf("request %d during the drain served by %q, want b", i, body)
		}
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v with a request still in flight", err)
	default:
	}
	once.Do(func() { close(release) })
	if err := <-drained; err != nil {
		t.Fatalf("Drain: %v", err)
	}
	if got := <-held; got != "a" {
		t.Fatalf("the held request got %q, want a's answer", got)
	}
	// A snapshot that still lists a must not revive it: its instance is
	// about to stop.
	te.Apply(&Snapshot{Generation: 3, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{a}}}})
	res, body := te.get(t, "app.localhost", "/")
	if res.StatusCode != 503 {
		t.Fatalf("only a drained backend listed: %d %q, want 503", res.StatusCode, body)
	}
}

func TestDrainDeadlineWithUpgradedConnection(t *testing.T) {
	testDrainDeadlineWithUpgradedConnection(t, newTestEdge(t, Options{}))
}

// testDrainDeadlineWithUpgradedConnection is the test on te, which listeners_test.go gives
// each listener in turn.
func testDrainDeadlineWithUpgradedConnection(t *testing.T, te *testEdge) {
	be := echoUpgradeBackend(t, "ws")
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{be}}}})
	conn, _, res := dialUpgrade(t, te, "app.localhost")
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %d, want 101", res.StatusCode)
	}
	te.Apply(&Snapshot{Generation: 2})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := te.Drain(ctx, "ws")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain with an open upgraded connection = %v, want context.DeadlineExceeded", err)
	}
	// The deadline closes the upgraded connection: it must not pin the
	// instance that is about to stop.
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(conn); err != nil {
		t.Fatalf("upgraded connection after the drain deadline: %v, want it closed by the edge", err)
	}
	waitFor(t, 10*time.Second, func() bool { return te.InFlight("ws") == 0 }, "the upgraded connection to leave the backend's count")
	if err := te.Drain(context.Background(), "ws"); err != nil {
		t.Fatalf("Drain after the connection closed: %v", err)
	}
	waitFor(t, 10*time.Second, func() bool { return te.pool.get("ws") == nil }, "the removed, idle backend to leave the pool")
}

// TestUpgradeSurvivesUnrelatedRouteChange: a WebSocket keeps working while
// snapshots change other routes, and even its own route's other backends.
func TestUpgradeSurvivesUnrelatedRouteChange(t *testing.T) {
	testUpgradeSurvivesUnrelatedRouteChange(t, newTestEdge(t, Options{}))
}

// testUpgradeSurvivesUnrelatedRouteChange is the test on te, which listeners_test.go gives
// each listener in turn.
func testUpgradeSurvivesUnrelatedRouteChange(t *testing.T, te *testEdge) {
	ws := echoUpgradeBackend(t, "ws")
	other := newBackend(t, "other")
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{ws}}}})
	conn, br, res := dialUpgrade(t, te, "app.localhost")
	if res.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %d, want 101", res.StatusCode)
	}
	for gen := uint64(2); gen < 6; gen++ {
		te.Apply(&Snapshot{Generation: gen, Routes: []Route{
			{Host: "app.localhost", App: "app", Backends: []Backend{ws, other}},
			{Host: fmt.Sprintf("new-%d.localhost", gen), App: "new", Backends: []Backend{other}},
		}})
		msg := fmt.Sprintf("ping %d\n", gen)
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatalf("write after snapshot %d: %v", gen, err)
		}
		got, err := br.ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo after snapshot %d = %q, %v; want %q", gen, got, err, msg)
		}
	}
}

// TestBackendLifecycle follows one backend id through removal, return and
// an address change.
func TestBackendLifecycle(t *testing.T) {
	te := newTestEdge(t, Options{})
	a := newBackend(t, "a")
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	h := holdingBackend(t, "h", entered, release)
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	route := func(gen uint64, bs ...Backend) *Snapshot {
		return &Snapshot{Generation: gen, Routes: []Route{{Host: "app.localhost", App: "app", Backends: bs}}}
	}

	te.Apply(route(1, a))
	te.get(t, "app.localhost", "/")
	te.Apply(route(2))
	// The client may hold the answer a moment before the edge counts the
	// request done; the backend leaves the pool once it has.
	waitFor(t, 5*time.Second, func() bool { return te.pool.get("a") == nil }, "the idle backend to leave the pool after it left the snapshot")
	te.Apply(route(3, a))
	if _, body := te.get(t, "app.localhost", "/"); body != "a" {
		t.Fatalf("returning backend: served by %q, want a", body)
	}

	// An address change under the same id sends new requests to the new
	// address.
	moved := newBackend(t, "a-moved")
	te.Apply(route(4, Backend{ID: "a", Addr: moved.Addr}))
	if _, body := te.get(t, "app.localhost", "/"); body != "a-moved" {
		t.Fatalf("after the address change served by %q, want a-moved", body)
	}

	// A removed backend with a request in flight stays until it ends.
	te.Apply(route(5, h))
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequest(http.MethodGet, te.url+"/", nil)
		req.Host = "app.localhost"
		if res, err := te.client.Do(req); err == nil {
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}()
	<-entered
	te.Apply(route(6))
	if te.pool.get("h") == nil {
		t.Fatal("backend with a request in flight dropped from the pool")
	}
	once.Do(func() { close(release) })
	<-done
	waitFor(t, 10*time.Second, func() bool { return te.pool.get("h") == nil }, "the backend to leave the pool after its last request")
}

// TestDrainClosesIdleUpstreamConnections: once Drain returns, the edge
// holds no idle connection to the instance, so the instance can exit on
// SIGTERM without a pooled connection being reused after it.
func TestDrainClosesIdleUpstreamConnections(t *testing.T) {
	te := newTestEdge(t, Options{})
	var open atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "a")
	}))
	srv.Config.ConnState = func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app",
		Backends: []Backend{{ID: "a", Addr: srv.Listener.Addr().String(), Release: 1}}}}})
	for range 5 {
		te.get(t, "app.localhost", "/")
	}
	if open.Load() == 0 {
		t.Fatal("the edge kept no upstream connection open: the test proves nothing")
	}
	// Leave the snapshot, as the controller does, then drain.
	te.Apply(&Snapshot{Generation: 2, Routes: []Route{{Host: "app.localhost", App: "app"}}})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := te.Drain(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return open.Load() == 0 }, "the edge's upstream connections to close")
}
