// Command deploy is skiff's deploy benchmark (`make bench-deploy`): for
// a 3-replica app whose binary or image is already local, it measures
// the time from `skiff deploy --wait` starting to every request reaching
// the new release, per strategy and runtime, and writes the medians to
// results.md.
//
// A real `skiff server` runs on free loopback ports with a temporary
// data directory; a poller sends requests through its edge every few
// milliseconds and records which release answered. Everything it starts
// is stopped when it ends, and every run is bounded.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/skiff-sh/skiff/internal/testenv"
)

// strategies are the deploy blocks measured. The canary holds one step
// of 50% for 1s: its time is that pause plus the instance work.
var strategies = []struct{ name, block string }{
	{"rolling", "deploy: {strategy: rolling}\n"},
	{"blue-green", "deploy: {strategy: blue-green, keep: 0s}\n"},
	{"canary", "deploy: {strategy: canary, steps: [{weight: 50%, pause: 1s}]}\n"},
}

const image = "skiff-bench/deploy-app:latest"

type config struct {
	skiff    string
	out      string
	rounds   int
	runtimes []string
}

func main() {
	var cfg config
	var runtimes string
	flag.StringVar(&cfg.skiff, "skiff", "bin/skiff", "the skiff binary (make builds it)")
	flag.StringVar(&cfg.out, "out", "bench/deploy/results.md", "where to write the results")
	flag.IntVar(&cfg.rounds, "rounds", 5, "deploys per strategy and runtime")
	flag.StringVar(&runtimes, "runtimes", "process,docker", "runtimes to measure")
	flag.Parse()
	cfg.runtimes = strings.Split(runtimes, ",")
	if cfg.rounds < 1 || cfg.rounds > 50 {
		fmt.Fprintln(os.Stderr, "bench/deploy: -rounds must be 1-50")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	if err := run(ctx, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench/deploy:", err)
		os.Exit(1)
	}
}

// sample is one deploy's figures.
type sample struct {
	// full is when every request went to the new release from then on;
	// done is when `skiff deploy --wait` returned; both from its start.
	full, done time.Duration
	answers    int
}

func run(ctx context.Context, cfg config) error {
	skiff, err := filepath.Abs(cfg.skiff)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "skiff-bench-deploy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	// Process apps run as nobody when skiff runs as root: it must be able
	// to pass through to the data directory.
	if err := os.Chmod(dir, 0o711); err != nil {
		return err
	}
	appBin := filepath.Join(dir, "ctx", "app")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", appBin, "./internal/e2e/testapp")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the app: %v\n%s", err, out)
	}
	if slices.Contains(cfg.runtimes, "docker") {
		os.WriteFile(filepath.Join(dir, "ctx", "Dockerfile"), []byte("FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n"), 0o644)
		if out, err := exec.CommandContext(ctx, "docker", "build", "-q", "-t", image, filepath.Join(dir, "ctx")).CombinedOutput(); err != nil {
			return fmt.Errorf("build the image (is Docker Engine running? scripts/test-setup.sh starts it): %v\n%s", err, out)
		}
	}
	srv, err := startServer(ctx, skiff, dir)
	if err != nil {
		return err
	}
	defer srv.stop()

	results := map[string][]sample{}
	var order []string
	for _, rt := range cfg.runtimes {
		for _, st := range strategies {
			app := fmt.Sprintf("%s-%s", map[string]string{"process": "p", "docker": "d"}[rt], st.name)
			appDir := filepath.Join(dir, app)
			os.MkdirAll(appDir, 0o755)
			run := `command: ["./testapp"]`
			if rt == "docker" {
				run = "image: " + image + "\nport: 8080\nenv: {LISTEN_HOST: 0.0.0.0}"
			} else if err := copyFile(appBin, filepath.Join(appDir, "testapp")); err != nil {
				return err
			}
			spec := fmt.Sprintf("name: %s\n%s\nreplicas: 3\nhealth: {path: /healthz}\n%s", app, run, st.block)
			if err := os.WriteFile(filepath.Join(appDir, "skiff.yaml"), []byte(spec), 0o644); err != nil {
				return err
			}
			key := rt + "/" + st.name
			order = append(order, key)
			// The first deploy starts the app; the measured ones replace it.
			if _, err := srv.deploy(ctx, appDir, app, 0); err != nil {
				return fmt.Errorf("%s: first deploy: %w", key, err)
			}
			for i := range cfg.rounds {
				s, err := srv.deploy(ctx, appDir, app, i+2)
				if err != nil {
					return fmt.Errorf("%s: deploy %d: %w", key, i+1, err)
				}
				fmt.Printf("%-20s deploy %d: all traffic on the new release after %s, deploy --wait returned after %s (%d answers)\n",
					key, i+1, s.full.Round(time.Millisecond), s.done.Round(time.Millisecond), s.answers)
				results[key] = append(results[key], s)
			}
			srv.skiff(ctx, "destroy", app)
		}
	}
	return os.WriteFile(cfg.out, []byte(report(cfg, order, results)), 0o644)
}

// server is a running `skiff server`.
type server struct {
	bin, dataDir, httpAddr, apiAddr string
	cmd                             *exec.Cmd
}

func startServer(ctx context.Context, bin, dir string) (*server, error) {
	s := &server{bin: bin, dataDir: filepath.Join(dir, "data"), httpAddr: freeAddr(), apiAddr: freeAddr()}
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "server", "--data-dir", s.dataDir, "--http-addr", s.httpAddr, "--api-addr", s.apiAddr)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := s.skiff(ctx, "apps"); err == nil {
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, errors.New("skiff server did not answer within 30s; see its log")
		}
		select {
		case <-ctx.Done():
			s.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop interrupts the server and waits for it, as a user's Ctrl-C would.
func (s *server) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

// skiff runs the CLI against the server.
func (s *server) skiff(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, s.bin, append([]string{"--server", "unix://" + filepath.Join(s.dataDir, "api.sock")}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("skiff %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// deploy runs `skiff deploy --wait` for release n while polling the edge,
// and returns when every request reached release n.
func (s *server) deploy(ctx context.Context, dir, app string, n int) (sample, error) {
	pctx, stopPoll := context.WithCancel(ctx)
	p := &poller{}
	var wg sync.WaitGroup
	start := time.Now()
	if n > 0 {
		wg.Go(func() { p.run(pctx, s.httpAddr, app+".localhost", start) })
	}
	_, err := s.skiff(ctx, "deploy", "--wait", "-f", filepath.Join(dir, "skiff.yaml"))
	done := time.Since(start)
	if err == nil && n > 0 {
		// Watch a little longer, so that "from then on" means something.
		select {
		case <-ctx.Done():
		case <-time.After(300 * time.Millisecond):
		}
	}
	stopPoll()
	wg.Wait()
	if err != nil || n == 0 {
		return sample{}, err
	}
	full, ok := p.fullFrom(n)
	if !ok {
		return sample{}, fmt.Errorf("release %d never took every request (answers: %v)", n, p.summary())
	}
	return sample{full: full, done: done, answers: len(p.answers)}, nil
}

// poller sends a request through the edge every 2ms and records which
// release answered, and when.
type poller struct {
	mu      sync.Mutex
	answers []answer
}

type answer struct {
	at      time.Duration
	release int // 0: a failed request
}

func (p *poller) run(ctx context.Context, addr, host string, start time.Time) {
	c := &http.Client{Timeout: 5 * time.Second}
	for i := 0; ctx.Err() == nil && i < 100_000; i++ {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
		req.Host = host
		rel := 0
		if res, err := c.Do(req); err == nil {
			b, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				f := strings.Fields(string(b))
				if len(f) >= 2 && f[0] == "release" {
					rel, _ = strconv.Atoi(f[1])
				}
			}
		} else if ctx.Err() != nil {
			return
		}
		p.mu.Lock()
		p.answers = append(p.answers, answer{at: time.Since(start), release: rel})
		p.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
}

// fullFrom returns when release n answered every request from then on.
func (p *poller) fullFrom(n int) (time.Duration, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := len(p.answers)
	for i > 0 && p.answers[i-1].release == n {
		i--
	}
	if i == len(p.answers) {
		return 0, false
	}
	return p.answers[i].at, true
}

func (p *poller) summary() map[int]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	m := map[int]int{}
	for _, a := range p.answers {
		m[a.release]++
	}
	return m
}

func report(cfg config, order []string, results map[string][]sample) string {
	var b bytes.Buffer
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# Deploy time\n\n`make bench-deploy` on %s: %s; %s.\n\n", host, testenv.Machine(), time.Now().UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("A 3-replica app whose binary (process) or image (docker) is already local, probed with its spec's defaults (`health: {path: /healthz}`). " +
		"**To all traffic** is the time from starting `skiff deploy --wait` (upload included) until every request through the edge, polled every 2 ms, reaches the new release and keeps doing so; " +
		"**deploy --wait** is when the command returned, the release complete: for rolling and canary once the old instances are drained and stopped, for blue-green at its switch (its old set then leaves without traffic). " +
		"The canary holds one step of 50% for 1 s; blue-green keeps no old set. ")
	fmt.Fprintf(&b, "Medians of %d deploys, with the range.\n\n", cfg.rounds)
	b.WriteString("| runtime | strategy | to all traffic | deploy --wait |\n| --- | --- | --- | --- |\n")
	for _, key := range order {
		s := results[key]
		rt, st, _ := strings.Cut(key, "/")
		full := make([]time.Duration, len(s))
		done := make([]time.Duration, len(s))
		for i := range s {
			full[i], done[i] = s[i].full, s[i].done
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", rt, st, spread(full), spread(done))
	}
	b.WriteString("\nThe bar: under 3 s to all traffic for rolling with a fast-starting app. For comparison, Dokku's zero-downtime checks wait 10 s by default (CHECKS_WAIT) before it switches traffic.\n")
	return b.String()
}

// spread writes the median and range of ds.
func spread(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	r := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	return fmt.Sprintf("%s (%s–%s)", r(med), r(s[0]), r(s[len(s)-1]))
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}
