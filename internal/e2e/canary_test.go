package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/client"
)

// TestCanaryAnalysisRollsBack deploys, over a good release, one that
// answers 500 to every fifth request, as a canary at 10%. The edge's
// figures must fail its analysis and roll it back by itself: the users
// who saw errors stay within the canary's 10% share of the requests of
// its analysis window, the failed event carries the error rate it saw,
// and afterwards only the good release answers.
func TestCanaryAnalysisRollsBack(t *testing.T) {
	s := newServer(t)
	s.start()
	const canary = `deploy:
  strategy: canary
  steps: [{weight: 10%, pause: 5m}]
  analysis: {max_error_rate: 1%, min_requests: 30}
`
	good := pack(t, appDir(t, "name: shop\ncommand: [\"./testapp\"]\nreplicas: 2\nhealth: {path: /healthz, interval: 200ms}\n"+canary))
	bad := pack(t, appDir(t, "name: shop\ncommand: [\"./testapp\"]\nreplicas: 2\nenv: {FAIL_EVERY: \"5\"}\nhealth: {path: /healthz, interval: 200ms}\n"+canary))
	ctx := context.Background()
	rel1, err := deploy(ctx, s.client, good)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitStatus(t, s.client, "shop", rel1.Number, 30*time.Second); r.Status != "complete" {
		t.Fatalf("release 1: %s: %s", r.Status, r.Message)
	}

	// Users without cookies: each request lands by weight. The window is
	// from the canary's first answer until its release failed.
	var mu sync.Mutex
	byRelease := map[string]int{}
	errors, total := 0, 0
	inWindow, windowOver := false, false
	canaryRel := fmt.Sprint(rel1.Number + 1)
	lctx, stop := context.WithTimeout(ctx, 2*time.Minute)
	defer stop()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second}
			for n := 0; lctx.Err() == nil && n < 20000; n++ {
				status, body, err := getStatus(c, s.httpAddr, "shop.localhost")
				if lctx.Err() != nil {
					return
				}
				mu.Lock()
				rel, _, _ := strings.Cut(strings.TrimPrefix(body, "release "), " ")
				byRelease[rel]++
				inWindow = inWindow || rel == canaryRel
				if inWindow && !windowOver {
					total++
					if status == http.StatusInternalServerError {
						errors++
					}
				}
				if err != nil {
					t.Errorf("request failed outright: %v", err)
				}
				mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	rel2, err := deploy(ctx, s.client, bad)
	if err != nil {
		t.Fatal(err)
	}
	r := waitStatus(t, s.client, "shop", rel2.Number, 90*time.Second)
	mu.Lock()
	windowOver = true
	windowTotal, windowErrors := total, errors
	mu.Unlock()
	eventually(t, 20*time.Second, func() error { return converged(s.client, "shop", rel1.Number, 2) })
	stop()
	wg.Wait()

	t.Logf("release %d: %s: %s", rel2.Number, r.Status, r.Message)
	t.Logf("in the canary's window: %d requests, %d answered 500; all answers by release %v", windowTotal, windowErrors, byRelease)
	if r.Status != "failed" || !strings.Contains(r.Message, "canary analysis failed at step 1 (10% of requests)") || !strings.Contains(r.Message, "over max_error_rate 1%") {
		t.Fatalf("release %d ended %s: %q; want failed by its analysis", rel2.Number, r.Status, r.Message)
	}
	if windowErrors == 0 {
		t.Fatal("no user saw the bad release: the canary took no traffic")
	}
	if share := float64(windowErrors) / float64(windowTotal); share > 0.10 {
		t.Errorf("%.1f%% of requests failed during the canary, more than its 10%% share", 100*share)
	}
	// The event says what failed, with the figure.
	var failed *api.Event
	err = s.client.Events(ctx, client.EventQuery{App: "shop", Release: rel2.Number}, func(e api.Event) error {
		if e.Kind == "release.failed" {
			failed = &e
		}
		return nil
	})
	if err != nil || failed == nil {
		t.Fatalf("no release.failed event (%v)", err)
	}
	if rate, _ := failed.Data["error_rate"].(float64); rate < 10 || rate > 35 {
		t.Errorf("failed event's error_rate = %v, want about 20: %+v", failed.Data["error_rate"], failed.Data)
	}
	// Only the good release answers now.
	for range 20 {
		status, body, err := getStatus(http.DefaultClient, s.httpAddr, "shop.localhost")
		if err != nil || status != http.StatusOK || !strings.HasPrefix(body, fmt.Sprintf("release %d ", rel1.Number)) {
			t.Fatalf("after the rollback: %d %q %v", status, body, err)
		}
	}
}

// getStatus fetches / for host and returns the status and body.
func getStatus(c *http.Client, addr, host string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	res, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}
