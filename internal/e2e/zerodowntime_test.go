package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestZeroLostRequests deploys a 2-replica app ten times in a row under
// constant load. The app holds every request 100ms and exits the instant
// it gets SIGTERM, so any request routed to a leaving instance, or any
// upstream connection reused after it left, would fail.
func TestZeroLostRequests(t *testing.T) {
	s := newServer(t)
	s.start()
	dir := appDir(t, `name: steady
command: ["./testapp"]
replicas: 2
env: {HOLD: 100ms}
health: {path: /healthz, interval: 200ms, timeout: 200ms}
`)
	b := pack(t, dir)
	ctx := context.Background()
	rel, err := deploy(ctx, s.client, b)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitStatus(t, s.client, "steady", rel.Number, 60*time.Second); r.Status != "complete" {
		t.Fatalf("first deploy: %s: %s", r.Status, r.Message)
	}

	load := startLoad(s.httpAddr, "steady.localhost", 8, 120*time.Second)
	const deploys = 10
	for i := range deploys {
		rel, err := deploy(ctx, s.client, b)
		if err != nil {
			t.Fatalf("deploy %d: %v", i, err)
		}
		r := waitStatus(t, s.client, "steady", rel.Number, 60*time.Second)
		if r.Status != "complete" {
			t.Fatalf("deploy %d: release %d %s: %s", i, rel.Number, r.Status, r.Message)
		}
		// Once the deploy is done, every answer comes from the new release.
		for range 10 {
			body, err := get(http.DefaultClient, s.httpAddr, "steady.localhost")
			if err != nil {
				t.Fatalf("after deploy %d: %v", i, err)
			}
			if want := fmt.Sprintf("release %d ", rel.Number); !strings.HasPrefix(body, want) {
				t.Fatalf("after release %d was done, answer %q", rel.Number, body)
			}
		}
	}
	res := load.stop()
	t.Logf("%d requests during %d deploys: %d failed", res.ok+int64(len(res.failures)), deploys, len(res.failures))
	if res.ok < 100 {
		t.Fatalf("only %d requests succeeded: the load did not run", res.ok)
	}
	if len(res.failures) > 0 {
		t.Fatalf("%d requests failed, first: %v", len(res.failures), res.failures[:min(5, len(res.failures))])
	}
}

type loadResult struct {
	ok       int64
	failures []string
	// failed says when each failed request began and ended, in the
	// order of failures.
	failed []span
}

// span is when one request began and ended.
type span struct{ start, end time.Time }

type load struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	ok     atomic.Int64
	mu     sync.Mutex
	fails  []string
	spans  []span
}

// startLoad runs workers against host until stop, or until limit passes,
// or 200,000 requests: half reuse connections, half open a new one for
// every request; GETs and POSTs with bodies alternate.
func startLoad(addr, host string, workers int, limit time.Duration) *load {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	l := &load{cancel: cancel}
	var budget atomic.Int64
	budget.Store(200_000)
	for w := range workers {
		tr := &http.Transport{DisableKeepAlives: w%2 == 1, MaxIdleConnsPerHost: 4}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		l.wg.Go(func() {
			defer tr.CloseIdleConnections()
			for n := 0; ctx.Err() == nil && budget.Add(-1) >= 0; n++ {
				var err error
				began := time.Now()
				if n%2 == 0 {
					_, err = get(c, addr, host)
				} else {
					err = post(c, addr, host, fmt.Sprintf("body-%d-%d", w, n))
				}
				if ctx.Err() != nil {
					return // stopped mid-request: not the server's failure
				}
				if err != nil {
					l.mu.Lock()
					l.fails = append(l.fails, err.Error())
					l.spans = append(l.spans, span{began, time.Now()})
					l.mu.Unlock()
					continue
				}
				l.ok.Add(1)
			}
		})
	}
	return l
}

func (l *load) stop() loadResult {
	l.cancel()
	l.wg.Wait()
	return loadResult{ok: l.ok.Load(), failures: l.fails, failed: l.spans}
}

func get(c *http.Client, addr, host string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	return do(c, req)
}

func post(c *http.Client, addr, host, body string) error {
	req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Host = host
	got, err := do(c, req)
	if err != nil {
		return err
	}
	if !strings.HasSuffix(got, " echo "+body) {
		return fmt.Errorf("POST echo: got %q", got)
	}
	return nil
}

func do(c *http.Client, req *http.Request) (string, error) {
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s %s: status %d: %s", req.Method, req.URL.Path, resp.StatusCode, b)
	}
	return string(b), nil
}
