package e2e

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNeverReadyDeployFails deploys, over a serving release, a release
// that can never serve, under light load through the edge. The deploy
// must fail with a message saying why, and the users of the app must not
// notice: no request fails, none reaches the bad release, and the release
// that served before goes on serving with the same instances. So under
// every deploy strategy.
func TestNeverReadyDeployFails(t *testing.T) {
	for _, st := range reliabilityStrategies {
		t.Run(st.name, func(t *testing.T) { testNeverReady(t, st.deploy) })
	}
}

func testNeverReady(t *testing.T, deployBlock string) {
	cases := []struct {
		name string
		// env is release 2's env in the spec's flow style.
		env string
		// wantMsg must all be in release 2's failure message.
		wantMsg []string
	}{
		{
			name:    "healthz always 503",
			env:     `{NEVER_READY: "1"}`,
			wantMsg: []string{"health.ready_timeout", "instance(s) ready", "503"},
		},
		{
			name:    "crashes at start",
			env:     `{CRASH: "1"}`,
			wantMsg: []string{"exited with code 3", "keeps crashing", "crashing on purpose"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			// A short backoff lets the crashing release reach the crash
			// limit in well under a second.
			s := newServer(t, "--restart-backoff", "100ms", "--restart-backoff-max", "800ms")
			s.start()
			const health = `health: {path: /healthz, interval: 200ms, timeout: 200ms, ready_timeout: 3s}`
			good := pack(t, appDir(t, "name: shaky\ncommand: [\"./testapp\"]\nreplicas: 2\n"+health+"\n"+deployBlock))
			bad := pack(t, appDir(t, "name: shaky\ncommand: [\"./testapp\"]\nreplicas: 2\nenv: "+tc.env+"\n"+health+"\n"+deployBlock))
			ctx := context.Background()

			rel1, err := deploy(ctx, s.client, good)
			if err != nil {
				t.Fatal(err)
			}
			if r := waitStatus(t, s.client, "shaky", rel1.Number, 30*time.Second); r.Status != "complete" {
				t.Fatalf("release %d: %s: %s", rel1.Number, r.Status, r.Message)
			}
			before := instanceIDs(t, s, "shaky")

			l := startAnswerLoad(s.httpAddr, "shaky.localhost", 2, 60*time.Second)
			rel2, err := deploy(ctx, s.client, bad)
			if err != nil {
				l.stop()
				t.Fatal(err)
			}
			r := waitStatus(t, s.client, "shaky", rel2.Number, 30*time.Second)
			// The failed release's instances are cleared away while the
			// load still runs: that too must not disturb anyone.
			eventually(t, 20*time.Second, func() error { return converged(s.client, "shaky", rel1.Number, 2) })
			res := l.stop()

			t.Logf("release 2: %s: %s", r.Status, r.Message)
			if r.Status != "failed" {
				t.Errorf("release %d ended %q (%s); want failed", rel2.Number, r.Status, r.Message)
			}
			for _, m := range tc.wantMsg {
				if !strings.Contains(r.Message, m) {
					t.Errorf("failure message of release %d lacks %q: %s", rel2.Number, m, r.Message)
				}
			}
			after := instanceIDs(t, s, "shaky")
			if !slices.Equal(after, before) {
				t.Errorf("release %d runs instances %v after the failed deploy, want the same %v as before", rel1.Number, after, before)
			}
			if st, err := s.client.App(ctx, "shaky"); err != nil || st.Target != rel1.Number {
				t.Errorf("app target release %d (%v), want %d", st.Target, err, rel1.Number)
			}

			total := 0
			for body, n := range res.answers {
				total += n
				if !isAnswerOf(body, rel1.Number, before) {
					t.Errorf("%d answer(s) %q: not from release %d's instances %v", n, body, rel1.Number, before)
				}
			}
			t.Logf("%d answers during the deploy: %v; %d failed", total, res.answers, len(res.failures))
			if len(res.failures) > 0 {
				t.Errorf("%d requests failed, first: %v", len(res.failures), res.failures[:min(5, len(res.failures))])
			}
			if total < 50 {
				t.Errorf("only %d requests answered: the load did not run", total)
			}

			// And it still serves from both of its instances.
			seen := map[string]bool{}
			eventually(t, 5*time.Second, func() error {
				body, err := get(http.DefaultClient, s.httpAddr, "shaky.localhost")
				if err != nil {
					return err
				}
				if !isAnswerOf(body, rel1.Number, before) {
					t.Fatalf("after the failed deploy the edge answered %q", body)
				}
				seen[body] = true
				if len(seen) < len(before) {
					return fmt.Errorf("answers so far %v; want one from each of %v", slices.Collect(maps.Keys(seen)), before)
				}
				return nil
			})
		})
	}
}

// instanceIDs lists app's instance ids, sorted.
func instanceIDs(t testing.TB, s *serverProc, app string) []string {
	t.Helper()
	st, err := s.client.App(context.Background(), app)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, set := range st.Sets {
		for _, in := range set.Instances {
			ids = append(ids, in.ID)
		}
	}
	slices.Sort(ids)
	return ids
}

// isAnswerOf reports whether body is the testapp's answer from one of ids
// of release rel.
func isAnswerOf(body string, rel int, ids []string) bool {
	return slices.ContainsFunc(ids, func(id string) bool {
		return body == fmt.Sprintf("release %d instance %s", rel, id)
	})
}

// answerLoad sends GETs through the edge and counts each distinct answer,
// so a test can tell which instances served.
type answerLoad struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	res    answerResult
}

type answerResult struct {
	answers  map[string]int
	failures []string
}

// startAnswerLoad runs workers against host until stop or limit: half
// reuse connections, half open one per request. Each pauses 10ms between
// requests: light load, enough to notice any wrong or failed answer.
func startAnswerLoad(addr, host string, workers int, limit time.Duration) *answerLoad {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	l := &answerLoad{cancel: cancel, res: answerResult{answers: map[string]int{}}}
	for w := range workers {
		tr := &http.Transport{DisableKeepAlives: w%2 == 1}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		l.wg.Go(func() {
			defer tr.CloseIdleConnections()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				body, err := get(c, addr, host)
				if ctx.Err() != nil {
					return // stopped mid-request: not the server's failure
				}
				l.mu.Lock()
				if err != nil {
					l.res.failures = append(l.res.failures, err.Error())
				} else {
					l.res.answers[body]++
				}
				l.mu.Unlock()
			}
		})
	}
	return l
}

func (l *answerLoad) stop() answerResult {
	l.cancel()
	l.wg.Wait()
	return l.res
}
