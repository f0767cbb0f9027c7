package edge

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hangUp is a backend handler that reads the request (body included when
// readBody) and closes the connection without a response byte.
func hangUp(hits *atomic.Int64, readBody bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if readBody {
			io.ReadAll(r.Body)
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}
}

// refusedBackend returns a backend whose address refuses connections.
func refusedBackend(t *testing.T, id string) Backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return Backend{ID: id, Addr: addr, Release: 1}
}

func TestRetries(t *testing.T) {
	type result struct {
		status int
		body   string
	}
	tests := []struct {
		name   string
		method string
		body   string
		// backends gets hit counters; it returns the route's backends.
		backends func(t *testing.T, hits *atomic.Int64) []Backend
		// check gets the results of 20 requests and the failing
		// backends' hits.
		check func(t *testing.T, res []result, hits int64)
	}{
		{
			name: "GET reset before any response byte is retried once, never more", method: http.MethodGet,
			backends: func(t *testing.T, hits *atomic.Int64) []Backend {
				return []Backend{newBackendFunc(t, "a", hangUp(hits, false)), newBackendFunc(t, "b", hangUp(hits, false))}
			},
			check: func(t *testing.T, res []result, hits int64) {
				for _, r := range res {
					if r.status != http.StatusBadGateway {
						t.Fatalf("status %d, want 502 when both backends hang up", r.status)
					}
				}
				if hits != int64(2*len(res)) {
					t.Fatalf("%d requests reached backends %d times, want exactly twice each", len(res), hits)
				}
			},
		},
		{
			name: "POST is not retried once its body was sent", method: http.MethodPost, body: "payload",
			backends: func(t *testing.T, hits *atomic.Int64) []Backend {
				return []Backend{newBackendFunc(t, "a", hangUp(hits, true)), newBackendFunc(t, "b", hangUp(hits, true))}
			},
			check: func(t *testing.T, res []result, hits int64) {
				for _, r := range res {
					if r.status != http.StatusBadGateway {
						t.Fatalf("status %d, want 502", r.status)
					}
				}
				if hits != int64(len(res)) {
					t.Fatalf("%d POSTs reached backends %d times, want once each", len(res), hits)
				}
			},
		},
		{
			name: "GET reset by one backend is answered by the other", method: http.MethodGet,
			backends: func(t *testing.T, hits *atomic.Int64) []Backend {
				return []Backend{newBackendFunc(t, "a", hangUp(hits, false)), newBackend(t, "ok")}
			},
			check: func(t *testing.T, res []result, hits int64) {
				for _, r := range res {
					if r.status != http.StatusOK || r.body != "ok" {
						t.Fatalf("got %d %q, want 200 from ok", r.status, r.body)
					}
				}
			},
		},
		{
			name: "POST that could not connect is retried with its whole body", method: http.MethodPost, body: strings.Repeat("x", 100<<10),
			backends: func(t *testing.T, hits *atomic.Int64) []Backend {
				return []Backend{refusedBackend(t, "gone"), echoBackend(t, "echo")}
			},
			check: func(t *testing.T, res []result, hits int64) {
				for _, r := range res {
					if r.status != http.StatusOK || r.body != strings.Repeat("x", 100<<10) {
						t.Fatalf("got %d with %d bytes, want 200 echoing the whole body", r.status, len(r.body))
					}
				}
			},
		},
		{
			name: "POST to a backend that hangs up fails, others succeed", method: http.MethodPost, body: "payload",
			backends: func(t *testing.T, hits *atomic.Int64) []Backend {
				return []Backend{newBackendFunc(t, "a", hangUp(hits, true)), echoBackend(t, "echo")}
			},
			check: func(t *testing.T, res []result, hits int64) {
				failed := 0
				for _, r := range res {
					switch {
					case r.status == http.StatusBadGateway:
						failed++
					case r.status != http.StatusOK || r.body != "payload":
						t.Fatalf("got %d %q, want 200 echoing the body or 502", r.status, r.body)
					}
				}
				if int64(failed) != hits {
					t.Fatalf("%d POSTs failed but the failing backend saw %d: a POST was retried or lost", failed, hits)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A long cool-down would only hide the failing backend; this
			// test is about retries, so keep it in rotation.
			te := newTestEdge(t, Options{EjectionCooldown: time.Nanosecond, MaxEjectionCooldown: time.Nanosecond})
			var hits atomic.Int64
			te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: tc.backends(t, &hits)}}})
			var res []result
			for range 20 {
				var body io.Reader
				if tc.body != "" {
					body = strings.NewReader(tc.body)
				}
				r, b := te.do(t, tc.method, "app.localhost", "/", body, nil)
				res = append(res, result{r.StatusCode, b})
			}
			tc.check(t, res, hits.Load())
		})
	}
}

// echoBackend answers with the request body.
func echoBackend(t *testing.T, name string) Backend {
	return newBackendFunc(t, name, func(w http.ResponseWriter, r *http.Request) {
		// Read first: an HTTP/1 server may cut a body off once the
		// response has started.
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})
}

// TestTransportRetryCounts checks that a retry made by the standard
// transport itself (a reused connection that died) counts as the one
// retry: the request reaches backends at most twice.
func TestTransportRetryCounts(t *testing.T) {
	te := newTestEdge(t, Options{EjectionCooldown: time.Nanosecond, MaxEjectionCooldown: time.Nanosecond})
	var hits atomic.Int64
	// Each backend answers the first request on a connection and hangs
	// up on the next, so the edge's second request goes out on a reused
	// connection that fails.
	flaky := func(name string) Backend {
		var mu sync.Mutex
		served := map[string]bool{}
		return newBackendFunc(t, name, func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			first := !served[r.RemoteAddr]
			served[r.RemoteAddr] = true
			mu.Unlock()
			if first {
				io.WriteString(w, name)
				return
			}
			hangUp(&hits, false)(w, r)
		})
	}
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{flaky("a"), flaky("b")}}}})
	for i := range 30 {
		before := hits.Load()
		te.get(t, "app.localhost", "/")
		if n := hits.Load() - before; n > 2 {
			t.Fatalf("request %d reached backends %d times after failing; want at most 2", i, n)
		}
	}
}

// TestBackendKilledUnderLoad kills a backend that holds requests: every
// GET it held is answered by the other backend; only POSTs it held fail.
func TestBackendKilledUnderLoad(t *testing.T) {
	testBackendKilledUnderLoad(t, newTestEdge(t, Options{}))
}

// testBackendKilledUnderLoad is the test on te, which listeners_test.go gives
// each listener in turn.
func testBackendKilledUnderLoad(t *testing.T, te *testEdge) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var heldGET, heldPOST atomic.Int64
	block := make(chan struct{})
	doomed := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		if r.Method == http.MethodGet {
			heldGET.Add(1)
		} else {
			heldPOST.Add(1)
		}
		<-block // never answers: it is killed with these in flight
	})}
	go doomed.Serve(ln)
	t.Cleanup(func() { doomed.Close() })
	t.Cleanup(func() { close(block) })
	k := Backend{ID: "k", Addr: ln.Addr().String(), Release: 1}
	s := echoBackend(t, "s")
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{k, s}}}})

	const n = 60
	var wg sync.WaitGroup
	var done, getFailed, postFailed atomic.Int64
	for i := range n {
		method := http.MethodGet
		if i%2 == 1 {
			method = http.MethodPost
		}
		wg.Go(func() {
			defer done.Add(1)
			var body io.Reader
			if method == http.MethodPost {
				body = strings.NewReader("body")
			}
			req, _ := http.NewRequest(method, te.url+"/", body)
			req.Host = "app.localhost"
			res, err := te.client.Do(req)
			ok := err == nil && res.StatusCode == http.StatusOK
			if err == nil {
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
			if !ok && method == http.MethodGet {
				getFailed.Add(1)
			} else if !ok {
				postFailed.Add(1)
			}
		})
	}
	// Every request is either answered by s or held by k.
	waitFor(t, 10*time.Second, func() bool { return done.Load()+heldGET.Load()+heldPOST.Load() == n }, "every request to be answered or held")
	inFlight := te.InFlight("k")
	ln.Close()
	doomed.Close() // closes the held connections: the kill
	wg.Wait()
	if heldGET.Load() == 0 {
		t.Fatal("no GET was held by the killed backend; the test proved nothing")
	}
	if getFailed.Load() != 0 {
		t.Errorf("%d GETs failed; GETs held by a killed backend must be retried", getFailed.Load())
	}
	if postFailed.Load() > heldPOST.Load() || int64(inFlight) != heldGET.Load()+heldPOST.Load() {
		t.Errorf("%d POSTs failed, %d were held and %d requests in flight on the killed backend: only held POSTs may fail", postFailed.Load(), heldPOST.Load(), inFlight)
	}
}
