package edge

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// releaseBackend is a backend of release n that answers its release.
func releaseBackend(t *testing.T, id string, n int) Backend {
	b := newBackendFunc(t, id, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "release %d", n)
	})
	b.Release = n
	return b
}

// bucketOf returns the bucket a Set-Cookie of the split gave the client.
func bucketOf(t *testing.T, res *http.Response) string {
	t.Helper()
	for _, c := range res.Cookies() {
		if c.Name == stickyCookie+"web" {
			return c.Value
		}
	}
	return ""
}

func TestSplitByReleaseWeight(t *testing.T) {
	te := newTestEdge(t, Options{})
	v1a, v1b, v2 := releaseBackend(t, "v1a", 1), releaseBackend(t, "v1b", 1), releaseBackend(t, "v2", 2)
	apply := func(gen uint64, w1, w2 int) {
		te.Apply(&Snapshot{Generation: gen, Routes: []Route{{Host: "web.localhost", App: "web",
			Backends: []Backend{v1a, v1b, v2}, Sticky: true,
			Releases: []ReleaseWeight{{Release: 1, Weight: w1}, {Release: 2, Weight: w2}}}}})
	}
	apply(1, 90, 10)

	// Clients without a cookie land by weight, and each is given one.
	const n = 2000
	canary := 0
	buckets := map[string]string{} // cookie value -> the release it saw
	for range n {
		res, body := te.get(t, "web.localhost", "/")
		b := bucketOf(t, res)
		if b == "" {
			t.Fatalf("a split answer without the sticky cookie: %v", res.Header["Set-Cookie"])
		}
		buckets[b] = body
		if body == "release 2" {
			canary++
		}
	}
	if share := float64(canary) / n; share < 0.07 || share > 0.13 {
		t.Errorf("release 2 at weight 10 of 100 got %.1f%% of %d requests", 100*share, n)
	}

	// A client with a cookie keeps its release, and is not given another.
	ask := func(bucket string) (string, *http.Response) {
		res, body := te.do(t, http.MethodGet, "web.localhost", "/", nil,
			http.Header{"Cookie": {stickyCookie + "web=" + bucket}})
		return body, res
	}
	for bucket, first := range buckets {
		for range 3 {
			body, res := ask(bucket)
			if body != first {
				t.Fatalf("bucket %s went to %q, then to %q", bucket, first, body)
			}
			if res.Header.Get("Set-Cookie") != "" {
				t.Fatalf("a client with a valid cookie got a new one: %s", res.Header.Get("Set-Cookie"))
			}
		}
	}

	// As the new release's weight grows, its clients stay on it.
	apply(2, 50, 50)
	moved := 0
	for bucket, first := range buckets {
		body, _ := ask(bucket)
		if first == "release 2" && body != "release 2" {
			t.Fatalf("bucket %s left release 2 when its weight grew", bucket)
		}
		if first == "release 1" && body == "release 2" {
			moved++
		}
	}
	if moved == 0 {
		t.Error("no client of release 1 moved to release 2 when its weight went from 10 to 50")
	}

	// At weight 0 a release gets only the requests that name it.
	apply(3, 100, 0)
	for bucket := range buckets {
		if body, _ := ask(bucket); body != "release 1" {
			t.Fatalf("bucket %s reached %q at weight 0", bucket, body)
		}
	}
	res, body := te.do(t, http.MethodGet, "web.localhost", "/", nil, http.Header{ReleaseHeader: {"2"}})
	if body != "release 2" {
		t.Errorf("%s: 2 reached %q", ReleaseHeader, body)
	}
	if c := res.Header.Get("Set-Cookie"); c != "" {
		t.Errorf("a request naming its release got a cookie: %s", c)
	}
	if _, body := te.do(t, http.MethodGet, "web.localhost", "/", nil, http.Header{ReleaseHeader: {"9"}}); body != "release 1" {
		t.Errorf("%s naming no release of the route reached %q", ReleaseHeader, body)
	}
}

func TestStatsPerBackend(t *testing.T) {
	te := newTestEdge(t, Options{})
	bad := newBackendFunc(t, "bad", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/fail") {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "web.localhost", App: "web", Backends: []Backend{bad}}}})
	before := te.Stats([]string{"bad", "unknown"})
	for i := range 40 {
		path := "/ok"
		if i%4 == 0 {
			path = "/fail"
		}
		te.get(t, "web.localhost", path)
	}
	got := te.Stats([]string{"bad", "unknown"}).Sub(before)
	if got.Requests != 40 || got.Errors != 10 {
		t.Errorf("stats = %d requests, %d errors; want 40 and 10", got.Requests, got.Errors)
	}
	if r := got.ErrorRate(); r != 0.25 {
		t.Errorf("error rate = %v, want 0.25", r)
	}
	if p := got.Percentile(0.95); p <= 0 || p > 5*time.Second {
		t.Errorf("p95 = %s", p)
	}
}

func TestLatencyBuckets(t *testing.T) {
	prev := -1
	for d := time.Microsecond; d < 2*time.Minute; d = d*9/8 + time.Microsecond {
		i := latencyBucket(d)
		if i < prev {
			t.Fatalf("bucket of %s is %d, below the bucket %d of a shorter time", d, i, prev)
		}
		prev = i
		up := bucketUpper(i)
		// Buckets count whole microseconds.
		if d := d.Truncate(time.Microsecond); d < time.Minute && (up < d || float64(up) > 1.26*float64(d)+float64(time.Microsecond)) {
			t.Errorf("%s falls in bucket %d whose bound is %s", d, i, up)
		}
	}
	var s Stats
	for range 95 {
		s.Latency[latencyBucket(10*time.Millisecond)]++
	}
	for range 5 {
		s.Latency[latencyBucket(time.Second)]++
	}
	if p := s.Percentile(0.95); p < 10*time.Millisecond || p > 13*time.Millisecond {
		t.Errorf("p95 of 95 answers at 10ms and 5 at 1s = %s", p)
	}
	if p := s.Percentile(0.99); p < time.Second {
		t.Errorf("p99 = %s, want about 1s", p)
	}
}
