package edge

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestAccessLog(t *testing.T) {
	var buf syncBuffer
	te := newTestEdge(t, Options{AccessLog: &buf})
	be := newBackend(t, "a")
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{be}}}})
	res, _ := te.get(t, "app.localhost", "/hello?token=secret")
	te.get(t, "nobody.localhost", "/x%7F")
	if err := te.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("access log has %d lines, want 2:\n%s", len(lines), buf.String())
	}
	var first, second map[string]any
	for i, dst := range []*map[string]any{&first, &second} {
		if err := json.Unmarshal([]byte(lines[i]), dst); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i+1, err, lines[i])
		}
	}
	want := map[string]any{
		"host": "app.localhost", "method": "GET", "path": "/hello", "status": 200.0, "bytes": 1.0,
		"upstream": be.Addr, "request_id": res.Header.Get(requestIDHeader), "app": "app",
	}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("first line %s = %v, want %v", k, first[k], v)
		}
	}
	if strings.Contains(lines[0], "secret") {
		t.Error("the query string reached the access log")
	}
	if d, ok := first["duration"].(float64); !ok || d <= 0 || d > 10 {
		t.Errorf("duration = %v, want seconds > 0", first["duration"])
	}
	if ts, _ := first["time"].(string); ts == "" {
		t.Error("no time")
	} else if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
		t.Errorf("time %q: %v", ts, err)
	}
	if second["status"] != 404.0 || second["app"] != "" || second["path"] != "/x\x7f" {
		t.Errorf("unrouted request logged as %v", second)
	}
}

func TestAccessLogDropsWhenBehind(t *testing.T) {
	r, w := blockingWriter()
	defer close(r)
	m := newMetrics(nil)
	l := newAccessLog(w, m.logDropped.Inc)
	e := accessEntry{status: 200}
	line := len(appendAccessEntry(nil, &e, &logClock{}))
	n := 4 * accessLogMaxPending / line
	for range n {
		l.add(e)
	}
	// The writer blocks on its first buffer, and at most
	// accessLogMaxPending bytes (and the line that passed it) wait
	// beside it; the rest must be dropped, not waited for.
	if kept := 2 * (accessLogMaxPending/line + 1); l.dropped.Load() < int64(n-kept) {
		t.Fatalf("dropped %d of %d entries, want at least %d", l.dropped.Load(), n, n-kept)
	}
	if got := testutil.ToFloat64(m.logDropped); got != float64(l.dropped.Load()) {
		t.Fatalf("drop metric %v, want %d", got, l.dropped.Load())
	}
}

// blockingWriter returns a writer whose writes block until the channel
// is closed.
func blockingWriter() (chan struct{}, *blockedWriter) {
	c := make(chan struct{})
	return c, &blockedWriter{c}
}

type blockedWriter struct{ c chan struct{} }

func (b *blockedWriter) Write(p []byte) (int, error) { <-b.c; return len(p), nil }

func TestAppendJSONString(t *testing.T) {
	for _, s := range []string{"plain", `q"b\`, "ctl\x00\x1f\x7f", "bad\xffutf8", "ünï", "\u2028"} {
		b := appendJSONString(nil, s)
		var got string
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("%q encoded as %s: %v", s, b, err)
		}
		if want := strings.ToValidUTF8(s, "\ufffd"); got != want {
			t.Fatalf("%q round-tripped to %q, want %q", s, got, want)
		}
	}
}

func TestLogClock(t *testing.T) {
	times := []time.Time{
		time.Date(2026, 11, 22, 1, 2, 3, 0, time.UTC),
		time.Date(2026, 1, 2, 23, 59, 59, 5, time.UTC),
		time.Date(1999, 12, 31, 0, 0, 0, 120000000, time.FixedZone("x", 3600)),
		time.Date(12345, 1, 1, 0, 0, 0, 999999999, time.UTC),
		time.Now(),
	}
	for i := range 1000 {
		times = append(times, time.Unix(int64(i)*7919*86400/3, int64(i)*999983%1e9))
	}
	// The same second twice: once formatted, once from the cache.
	times = append(times, times[0].Add(time.Millisecond), times[0])
	var c logClock
	for _, tm := range times {
		want := tm.UTC().Format(time.RFC3339Nano)
		if got := string(c.appendTime(nil, tm)); got != want {
			t.Fatalf("appendTime(%v) = %q, want %q", tm, got, want)
		}
	}
}

func TestAppendSeconds(t *testing.T) {
	for _, d := range []time.Duration{0, 1, 499, 501, 1501, time.Millisecond, 1234567891, 90 * time.Minute, -2500 * time.Microsecond} {
		want := strconv.FormatFloat(d.Seconds(), 'f', 6, 64)
		if got := string(appendSeconds(nil, d)); got != want {
			t.Errorf("appendSeconds(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	te := newTestEdge(t, Options{Metrics: reg})
	ok := newBackend(t, "ok")
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{
		{Host: "app.localhost", App: "app", Backends: []Backend{ok}},
		{Host: "down.localhost", App: "down", Backends: []Backend{refusedBackend(t, "gone")}},
	}})
	for range 3 {
		te.do(t, http.MethodPost, "app.localhost", "/", strings.NewReader("12345"), nil)
	}
	te.get(t, "down.localhost", "/")
	te.get(t, "nobody.localhost", "/")

	expect := `
# HELP skiff_edge_requests_total Requests the edge answered for an app, by status class.
# TYPE skiff_edge_requests_total counter
skiff_edge_requests_total{app="app",code="1xx"} 0
skiff_edge_requests_total{app="app",code="2xx"} 3
skiff_edge_requests_total{app="app",code="3xx"} 0
skiff_edge_requests_total{app="app",code="4xx"} 0
skiff_edge_requests_total{app="app",code="5xx"} 0
skiff_edge_requests_total{app="app",code="other"} 0
skiff_edge_requests_total{app="down",code="1xx"} 0
skiff_edge_requests_total{app="down",code="2xx"} 0
skiff_edge_requests_total{app="down",code="3xx"} 0
skiff_edge_requests_total{app="down",code="4xx"} 0
skiff_edge_requests_total{app="down",code="5xx"} 1
skiff_edge_requests_total{app="down",code="other"} 0
# HELP skiff_edge_request_bytes_total Request body bytes read from clients.
# TYPE skiff_edge_request_bytes_total counter
skiff_edge_request_bytes_total{app="app"} 15
skiff_edge_request_bytes_total{app="down"} 0
# HELP skiff_edge_response_bytes_total Response body bytes written to clients.
# TYPE skiff_edge_response_bytes_total counter
skiff_edge_response_bytes_total{app="app"} 6
# HELP skiff_edge_upstream_errors_total Upstream attempts that got no response: kind connect (could not connect) or response (failed after connecting).
# TYPE skiff_edge_upstream_errors_total counter
skiff_edge_upstream_errors_total{app="app",kind="connect"} 0
skiff_edge_upstream_errors_total{app="app",kind="response"} 0
skiff_edge_upstream_errors_total{app="down",kind="connect"} 1
skiff_edge_upstream_errors_total{app="down",kind="response"} 0
# HELP skiff_edge_unrouted_requests_total Requests for a host and path that no app serves (answered 404).
# TYPE skiff_edge_unrouted_requests_total counter
skiff_edge_unrouted_requests_total 1
# HELP skiff_edge_requests_in_flight Requests being proxied to an app now, upgraded connections included.
# TYPE skiff_edge_requests_in_flight gauge
skiff_edge_requests_in_flight{app="app"} 0
skiff_edge_requests_in_flight{app="down"} 0
`
	names := []string{"skiff_edge_requests_total", "skiff_edge_request_bytes_total", "skiff_edge_upstream_errors_total",
		"skiff_edge_unrouted_requests_total", "skiff_edge_requests_in_flight"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(expect), names...); err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "skiff_edge_request_duration_seconds"); n != 2 {
		t.Fatalf("%d latency histograms, want one per app", n)
	}
	// The response bytes of app are its three answers ("ok" each).
	if got := testutil.ToFloat64(te.metrics.bytesOut.WithLabelValues("app")); got != 6 {
		t.Fatalf("response bytes %v, want 6", got)
	}

	// A destroyed app's series go with it.
	te.Apply(&Snapshot{Generation: 2, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{ok}}}})
	sc := bufio.NewScanner(strings.NewReader(gather(t, reg)))
	for sc.Scan() {
		if strings.Contains(sc.Text(), `app="down"`) {
			t.Fatalf("series of a removed app remain: %s", sc.Text())
		}
	}
}

func gather(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			b.WriteString(mf.GetName())
			for _, l := range m.GetLabel() {
				b.WriteString(" " + l.GetName() + `="` + l.GetValue() + `"`)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

func TestMaxBody(t *testing.T) {
	te := newTestEdge(t, Options{})
	echo := echoBackend(t, "echo")
	te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", MaxBody: 10, Backends: []Backend{echo}}}})
	tests := []struct {
		name    string
		body    string
		chunked bool
		want    int
	}{
		{"at the limit", "0123456789", false, http.StatusOK},
		{"declared too large", "0123456789a", false, http.StatusRequestEntityTooLarge},
		{"streamed too large", strings.Repeat("x", 100<<10), true, http.StatusRequestEntityTooLarge},
		{"streamed within", "01234", true, http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, te.url+"/", strings.NewReader(tc.body))
			req.Host = "app.localhost"
			if tc.chunked {
				req.ContentLength = -1
				req.Body = io.NopCloser(strings.NewReader(tc.body))
			}
			res, err := te.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", res.StatusCode, tc.want)
			}
		})
	}
}
