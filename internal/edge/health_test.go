package edge

import (
	"io"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// TestPassiveEjection: a backend answering 5xx in a burst sits out its
// cool-down, then comes back once it answers well; a route whose only
// backend fails keeps using it rather than answer 503.
func TestPassiveEjection(t *testing.T) {
	const cooldown = 300 * time.Millisecond
	te := newTestEdge(t, Options{EjectionCooldown: cooldown})
	var broken atomic.Bool
	broken.Store(true)
	var sickHits atomic.Int64
	sick := newBackendFunc(t, "sick", func(w http.ResponseWriter, r *http.Request) {
		sickHits.Add(1)
		if broken.Load() {
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "sick")
	})
	well := newBackend(t, "well")
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{sick, well}}}})

	for i := 0; sickHits.Load() < errorLimit; i++ {
		if i > 1000 {
			t.Fatal("the sick backend never got its share of requests")
		}
		te.get(t, "app.localhost", "/")
	}
	ejectedAt := time.Now()
	for i := range 30 {
		_, body := te.get(t, "app.localhost", "/")
		if body != "well" && time.Since(ejectedAt) < cooldown {
			t.Fatalf("request %d after %d 5xx in a row served by %q during the cool-down, want well", i, errorLimit, body)
		}
	}
	broken.Store(false)
	waitFor(t, 10*time.Second, func() bool {
		_, body := te.get(t, "app.localhost", "/")
		return body == "sick"
	}, "the ejected backend to serve again after its cool-down")
	if n := te.pool.get("sick").health.ejections.Load(); n != 0 {
		t.Fatalf("ejections after a success = %d, want 0", n)
	}

	// Alone and failing, a backend is still used.
	broken.Store(true)
	te.Apply(&Snapshot{Generation: 2, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{sick}}}})
	for range 2 * errorLimit {
		if res, _ := te.get(t, "app.localhost", "/"); res.StatusCode != http.StatusInternalServerError {
			t.Fatalf("only backend ejected: got %d, want its own 500", res.StatusCode)
		}
	}
}

func TestEjectionCooldownDoubles(t *testing.T) {
	p := &pool{logger: quietLogger, cooldown: time.Second, maxCooldown: 3 * time.Second}
	b := &backend{id: "b", pool: p}
	for i, want := range []time.Duration{time.Second, 2 * time.Second, 3 * time.Second, 3 * time.Second} {
		for range connectFailLimit {
			b.failed(true)
		}
		got := time.Until(time.Unix(0, b.health.ejectedUntil.Load()))
		if got > want || got < want-500*time.Millisecond {
			t.Fatalf("ejection %d lasts %v, want %v", i+1, got, want)
		}
	}
	b.observe(time.Millisecond, http.StatusOK)
	if b.health.ejectedUntil.Load() != 0 || b.health.ejections.Load() != 0 {
		t.Fatal("a success did not end the ejection and reset its doubling")
	}
	for range connectFailLimit - 1 {
		b.failed(true)
	}
	if b.health.ejectedUntil.Load() != 0 {
		t.Fatalf("ejected after %d failed connects, want %d", connectFailLimit-1, connectFailLimit)
	}
}
