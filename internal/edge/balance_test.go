package edge

import (
	"io"
	"math"
	"net/http"
	"testing"
	"time"
)

func TestPick(t *testing.T) {
	type tb struct {
		load, weight int64
		draining     bool
		removed      bool
		ejected      bool
	}
	tests := []struct {
		name     string
		backends []tb
		except   int   // index of the backend a retry leaves; -1 for none
		want     []int // indices pick may return; nil for none
	}{
		{"fewer in flight", []tb{{load: 3, weight: 1}, {load: 1, weight: 1}}, -1, []int{1}},
		{"most loaded of three never", []tb{{load: 3, weight: 1}, {load: 1, weight: 1}, {load: 2, weight: 1}}, -1, []int{1, 2}},
		{"per unit of weight", []tb{{load: 3, weight: 4}, {load: 1, weight: 1}}, -1, []int{0}},
		{"weight cannot hide load", []tb{{load: 5, weight: 2}, {load: 2, weight: 1}}, -1, []int{1}},
		{"draining skipped", []tb{{load: 0, weight: 1, draining: true}, {load: 9, weight: 1}}, -1, []int{1}},
		{"removed skipped", []tb{{load: 0, weight: 1, removed: true}, {load: 9, weight: 1}}, -1, []int{1}},
		{"ejected skipped", []tb{{load: 0, weight: 1, ejected: true}, {load: 9, weight: 1}}, -1, []int{1}},
		{"all ejected still used", []tb{{load: 0, weight: 1, ejected: true}, {load: 9, weight: 1, ejected: true}}, -1, []int{0}},
		{"ejected beats closed", []tb{{load: 5, weight: 1, ejected: true}, {weight: 1, draining: true}}, -1, []int{0}},
		{"except left out", []tb{{load: 0, weight: 1}, {load: 9, weight: 1}}, 0, []int{1}},
		{"only except", []tb{{load: 0, weight: 1}}, 0, nil},
		{"all closed", []tb{{draining: true, weight: 1}, {removed: true, weight: 1}}, -1, nil},
		{"none", nil, -1, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := &route{}
			for _, x := range tc.backends {
				b := &backend{}
				b.inflight.Store(x.load)
				b.draining.Store(x.draining)
				b.removed.Store(x.removed)
				if x.ejected {
					b.health.ejectedUntil.Store(time.Now().Add(time.Hour).UnixNano())
				}
				rt.targets = append(rt.targets, target{b: b, weight: x.weight})
			}
			var except *backend
			if tc.except >= 0 {
				except = rt.targets[tc.except].b
			}
			for range 200 { // the draws are random; the answer must not be
				got := rt.pick(except)
				ok := got == nil && tc.want == nil
				for _, i := range tc.want {
					ok = ok || got == rt.targets[i].b
				}
				if !ok {
					t.Fatalf("pick chose %p, want one of backends %v", got, tc.want)
				}
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	a, b, c := &backend{}, &backend{}, &backend{}
	rt := &route{balancer: roundRobin, targets: []target{{b: a, weight: 2}, {b: b, weight: 1}, {b: c, weight: 1}}}
	// Loads do not matter to round robin.
	a.inflight.Store(100)
	counts := map[*backend]int{}
	for range 400 {
		counts[rt.pick(nil)]++
	}
	if counts[a] != 200 || counts[b] != 100 || counts[c] != 100 {
		t.Fatalf("400 picks gave a=%d b=%d c=%d, want 200/100/100 by weight", counts[a], counts[b], counts[c])
	}
	c.draining.Store(true)
	for range 30 {
		if rt.pick(nil) == c {
			t.Fatal("round robin chose a draining backend")
		}
	}
}

// TestPickTiesFollowWeight checks that an idle route spreads requests in
// proportion to weight rather than always choosing the first backend.
func TestPickTiesFollowWeight(t *testing.T) {
	a, b, c := &backend{}, &backend{}, &backend{}
	rt := &route{targets: []target{{b: a, weight: 3}, {b: b, weight: 1}, {b: c, weight: 1}}}
	const n = 50000
	counts := map[*backend]int{}
	for range n {
		counts[rt.pick(nil)]++
	}
	for _, tc := range []struct {
		name string
		b    *backend
		want float64
	}{{"weight 3", a, 0.6}, {"weight 1", b, 0.2}, {"other weight 1", c, 0.2}} {
		// Binomial standard deviation is under 0.3%; 2% is far outside it.
		if got := float64(counts[tc.b]) / n; math.Abs(got-tc.want) > 0.02 {
			t.Errorf("%s got share %.3f, want %.2f", tc.name, got, tc.want)
		}
	}
}

// TestLeastInFlight checks through the edge that a backend busy with a
// slow request gets no new request while another backend is idle.
func TestLeastInFlight(t *testing.T) {
	te := newTestEdge(t, Options{})
	entered := make(chan struct{}, 16)
	release := make(chan struct{})
	slow := newBackendFunc(t, "slow", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "slow")
	})
	fast := newBackend(t, "fast")
	// Registered after the backends, so it runs before their servers
	// wait for the held request to finish.
	t.Cleanup(func() { close(release) })
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{slow, fast}}}})

	// Send requests until one is held by the slow backend; the others are
	// answered by the fast one at once.
	held := false
	for i := 0; i < 200 && !held; i++ {
		answered := make(chan string, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodGet, te.url+"/", nil)
			req.Host = "app.localhost"
			res, err := te.client.Do(req)
			if err != nil {
				answered <- err.Error()
				return
			}
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			answered <- string(b)
		}()
		select {
		case <-entered:
			held = true
		case got := <-answered:
			if got != "fast" {
				t.Fatalf("request answered with %q before the slow backend was busy", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("request neither held nor answered")
		}
	}
	if !held {
		t.Fatal("200 requests never reached the slow backend: ties are not shared")
	}
	if n := te.InFlight("slow"); n != 1 {
		t.Fatalf("InFlight(slow) = %d, want 1", n)
	}
	for i := range 50 {
		if _, body := te.get(t, "app.localhost", "/"); body != "fast" {
			t.Fatalf("request %d served by %q while slow is busy and fast idle, want fast", i, body)
		}
	}
}

// TestPickSlowBackendNotStarved: on an idle route, a backend whose past
// answers were slow still gets its share; otherwise it would never get a
// request to show that it is fast again.
func TestPickSlowBackendNotStarved(t *testing.T) {
	rt := &route{}
	for i := range 3 {
		b := &backend{}
		if i == 0 {
			b.observe(2*time.Second, http.StatusOK)
		} else {
			b.observe(time.Millisecond, http.StatusOK)
		}
		rt.targets = append(rt.targets, target{b: b, weight: 1})
	}
	slow := 0
	for range 3000 {
		if rt.pick(nil) == rt.targets[0].b {
			slow++
		}
	}
	if slow < 700 || slow > 1300 {
		t.Fatalf("the slow backend got %d of 3000 idle picks, want about 1000", slow)
	}
}
