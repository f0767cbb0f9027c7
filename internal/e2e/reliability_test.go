package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/skiff-sh/skiff/internal/runtime/docker"
	"github.com/skiff-sh/skiff/internal/testenv"
)

// The deploy reliability test: under constant mixed load, consecutive
// deploys with each strategy, on each runtime, lose no request.
// SKIFF_RELIABILITY_DEPLOYS sets how many deploys (default 5, `make
// reliability` runs 20) and SKIFF_RELIABILITY_OUT names a file for the
// table of results.

// reliabilityStrategies are the deploy blocks the test deploys with: a
// blue-green keeps its old set only briefly and a canary pauses briefly,
// so that twenty deploys stay within minutes.
var reliabilityStrategies = []struct{ name, deploy string }{
	{"rolling", "deploy: {strategy: rolling}\n"},
	{"blue-green", "deploy: {strategy: blue-green, keep: 1s}\n"},
	{"canary", "deploy: {strategy: canary, steps: [{weight: 50%, pause: 500ms}]}\n"},
}

// reliabilityRow is one runtime and strategy's result.
type reliabilityRow struct {
	runtime, strategy string
	deploys           int
	took              time.Duration
	counts            map[string]int64
	failed            int
}

var reliabilityResults struct {
	mu   sync.Mutex
	rows []reliabilityRow
}

func TestReliability(t *testing.T) {
	deploys := 5
	if v := os.Getenv("SKIFF_RELIABILITY_DEPLOYS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			t.Fatalf("SKIFF_RELIABILITY_DEPLOYS=%q: want a number of deploys from 1 to 100", v)
		}
		deploys = n
	}
	t.Run("process", func(t *testing.T) {
		s := newServer(t)
		s.start()
		for _, st := range reliabilityStrategies {
			t.Run(st.name, func(t *testing.T) {
				app := "rel-" + st.name
				dir := appDir(t, reliabilitySpec(app, `command: ["./testapp"]`, st.deploy))
				runReliability(t, s, app, "process", st.name, pack(t, dir), deploys)
			})
		}
	})
	t.Run("docker", func(t *testing.T) {
		const image = "skiff-test/e2e-testapp:latest"
		var apps []string
		for _, st := range reliabilityStrategies {
			apps = append(apps, "drel-"+st.name)
		}
		s, e := dockerServer(t, apps[0])
		for _, app := range apps[1:] {
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				e.RemoveLabelled(ctx, docker.LabelApp+"="+app)
			})
		}
		ctxDir := t.TempDir()
		b, err := os.ReadFile(staticTestapp(t))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(ctxDir, "app"), b, 0o755)
		os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(testenv.AppDockerfile), 0o644)
		buildImage(t, e, ctxDir, image)
		for i, st := range reliabilityStrategies {
			t.Run(st.name, func(t *testing.T) {
				app := apps[i]
				dir := dockerAppDir(t, reliabilitySpec(app, "image: "+image+"\nport: 8080", st.deploy+"env: {LISTEN_HOST: 0.0.0.0}\n"), testenv.AppDockerfile)
				runReliability(t, s, app, "docker", st.name, pack(t, dir), deploys)
			})
		}
	})
	writeReliabilityResults(t)
}

func reliabilitySpec(app, run, extra string) string {
	return fmt.Sprintf("name: %s\n%s\nreplicas: 2\nhealth: {path: /healthz, interval: 200ms, timeout: 200ms}\n%s", app, run, extra)
}

// runReliability deploys b once, then deploys more times under mixed
// load, and fails on any failed request.
func runReliability(t *testing.T, s *serverProc, app, rt, strategy string, b bundle, deploys int) {
	ctx := context.Background()
	rel, err := deploy(ctx, s.client, b)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitStatus(t, s.client, app, rel.Number, 90*time.Second); r.Status != "complete" {
		t.Fatalf("first deploy: %s: %s", r.Status, r.Message)
	}
	host := app + ".localhost"
	load := startMixedLoad(s.httpAddr, host, 5*time.Minute)
	began := time.Now()
	for i := range deploys {
		rel, err := deploy(ctx, s.client, b)
		if err != nil {
			load.stop()
			t.Fatalf("deploy %d: %v", i+1, err)
		}
		if r := waitStatus(t, s.client, app, rel.Number, 90*time.Second); r.Status != "complete" {
			load.stop()
			t.Fatalf("deploy %d: release %d %s: %s", i+1, rel.Number, r.Status, r.Message)
		}
		// Done means the new release takes every request.
		for range 5 {
			body, err := get(http.DefaultClient, s.httpAddr, host)
			if err != nil || !strings.HasPrefix(body, fmt.Sprintf("release %d ", rel.Number)) {
				load.stop()
				t.Fatalf("after release %d was done: %q, %v", rel.Number, body, err)
			}
		}
	}
	took := time.Since(began)
	counts, failures := load.stop()
	t.Logf("%s %s: %d deploys in %s under load: %v; %d failed", rt, strategy, deploys, took.Round(time.Millisecond), counts, len(failures))
	reliabilityResults.mu.Lock()
	reliabilityResults.rows = append(reliabilityResults.rows, reliabilityRow{rt, strategy, deploys, took, counts, len(failures)})
	reliabilityResults.mu.Unlock()
	for _, kind := range loadKinds {
		if n := counts[kind]; n < 3 {
			t.Errorf("only %d %s requests succeeded over %d deploys: the load did not run", n, kind, deploys)
		}
	}
	if len(failures) > 0 {
		t.Fatalf("%d requests failed, first: %v", len(failures), failures[:min(5, len(failures))])
	}
}

// mixedLoad runs every kind of request a user's app sees, in a loop per
// kind paced to about 200 a second, until stopped, a time limit, or
// 300,000 requests.
type mixedLoad struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	mu     sync.Mutex
	counts map[string]int64
	fails  []string
}

// The kinds of request of the mixed load.
var loadKinds = []string{"keepalive-get", "keepalive-post", "fresh-get", "fresh-post", "stream", "websocket"}

func startMixedLoad(addr, host string, limit time.Duration) *mixedLoad {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	l := &mixedLoad{cancel: cancel, counts: map[string]int64{}}
	var budget atomic.Int64
	budget.Store(300_000)
	keep := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}, Timeout: 10 * time.Second}
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	for w, kind := range loadKinds {
		l.wg.Go(func() {
			for n := 0; ctx.Err() == nil && budget.Add(-1) >= 0; n++ {
				var err error
				body := fmt.Sprintf("body-%d-%d", w, n)
				switch kind {
				case "keepalive-get":
					_, err = get(keep, addr, host)
				case "keepalive-post":
					err = post(keep, addr, host, body)
				case "fresh-get":
					_, err = get(fresh, addr, host)
				case "fresh-post":
					err = post(fresh, addr, host, body)
				case "stream":
					err = stream(keep, addr, host)
				case "websocket":
					err = echoSocket(addr, host, body)
				}
				if ctx.Err() != nil {
					return // stopped mid-request: not the server's failure
				}
				l.mu.Lock()
				if err != nil {
					l.fails = append(l.fails, kind+": "+err.Error())
				} else {
					l.counts[kind]++
				}
				l.mu.Unlock()
				time.Sleep(5 * time.Millisecond) // pacing, so the budget lasts
			}
		})
	}
	return l
}

func (l *mixedLoad) stop() (map[string]int64, []string) {
	l.cancel()
	l.wg.Wait()
	return l.counts, l.fails
}

// stream reads a streamed response whole: every chunk must arrive.
func stream(c *http.Client, addr, host string) error {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/stream", nil)
	if err != nil {
		return err
	}
	req.Host = host
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET /stream: status %d", res.StatusCode)
	}
	sc := bufio.NewScanner(res.Body)
	n := 0
	for sc.Scan() {
		n++
		if want := fmt.Sprintf("chunk %d of 5 ", n); !strings.HasPrefix(sc.Text(), want) {
			return fmt.Errorf("GET /stream: line %d is %q", n, sc.Text())
		}
	}
	if err := sc.Err(); err != nil || n != 5 {
		return fmt.Errorf("GET /stream: %d of 5 chunks, then %v", n, err)
	}
	return nil
}

// echoSocket opens a WebSocket through the edge, exchanges five messages
// 20ms apart, and closes it.
func echoSocket(addr, host, body string) error {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	cfg, err := websocket.NewConfig("ws://"+host+"/ws", "http://"+host+"/")
	if err != nil {
		return err
	}
	ws, err := websocket.NewClient(cfg, conn)
	if err != nil {
		return fmt.Errorf("websocket handshake: %w", err)
	}
	defer ws.Close()
	for i := range 5 {
		msg := fmt.Sprintf("%s-%d", body, i)
		if err := websocket.Message.Send(ws, msg); err != nil {
			return fmt.Errorf("websocket send %d: %w", i, err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			return fmt.Errorf("websocket receive %d: %w", i, err)
		}
		if got != msg {
			return fmt.Errorf("websocket echo %d: got %q, want %q", i, got, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// writeReliabilityResults writes the table of results to
// SKIFF_RELIABILITY_OUT, when set.
func writeReliabilityResults(t *testing.T) {
	out := os.Getenv("SKIFF_RELIABILITY_OUT")
	if out == "" || t.Failed() {
		return
	}
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# Deploy reliability\n\n`make reliability` on %s (%s), %s.\n\n", host, testenv.Machine(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("Each row: a 2-replica app deployed again and again under constant mixed load. The app exits at once on SIGTERM. Requests are counted by kind; a stream is one response of five flushed chunks, a websocket one session of five echoed messages.\n\n")
	fmt.Fprintf(&b, "| runtime | strategy | deploys | time | %s | failed |\n|%s\n", strings.Join(loadKinds, " | "), strings.Repeat(" --- |", len(loadKinds)+5))
	rows := reliabilityResults.rows
	slices.SortStableFunc(rows, func(x, y reliabilityRow) int { return strings.Compare(x.runtime, y.runtime) })
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %d | %s |", r.runtime, r.strategy, r.deploys, r.took.Round(100*time.Millisecond))
		for _, k := range loadKinds {
			fmt.Fprintf(&b, " %d |", r.counts[k])
		}
		fmt.Fprintf(&b, " %d |\n", r.failed)
	}
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}
