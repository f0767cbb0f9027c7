package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

// results is everything results.md reports.
type results struct {
	cfg      config
	cells    []cell
	targets  []*target
	samples  map[string]map[string][]sample // cell -> target -> one per round
	versions map[string]string
	machine  []string
	lookup   string
	elapsed  time.Duration
}

// ratios returns, for target t in cell c, its req/s divided by ref's
// req/s of the same round, one per round both ran.
func (r *results) ratios(c, t, ref string) []float64 {
	a, b := r.samples[c][t], r.samples[c][ref]
	var out []float64
	for i := range min(len(a), len(b)) {
		if b[i].rps() > 0 {
			out = append(out, a[i].rps()/b[i].rps())
		}
	}
	return out
}

func (r *results) med(c, t string, f func(sample) float64) float64 {
	var v []float64
	for _, s := range r.samples[c][t] {
		v = append(v, f(s))
	}
	return median(v)
}

func (r *results) markdown() string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	w("# Edge benchmark\n\n")
	w("Written by `make bench-edge` (bench/edge) on %s; the measured part took %s. Do not edit by hand: run it again.\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), r.elapsed.Round(time.Second))
	w("## Machine\n\n")
	for _, m := range r.machine {
		w("- %s\n", m)
	}
	keys := make([]string, 0, len(r.versions))
	for k := range r.versions {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		w("- %s: %s\n", k, r.versions[k])
	}
	w("\n## Method\n\n")
	w("- One fixed backend (bench/edge/backend, Go net/http) answers `/1k` and `/1m` with 1 KiB and 1 MiB bodies. " +
		"It runs as the app `bench`, deployed with `skiff deploy` to a real `skiff server` in its default setup; " +
		"nginx, HAProxy, Caddy and the HTTP/1.1 no-proxy run all go to that same instance. " +
		"The HTTP/2 no-proxy baseline is the same binary serving TLS with HTTP/2 itself.\n")
	if len(r.cfg.engines) > 0 {
		w("- skiff-<engine> rows are one `skiff server` each, with `--edge-engine <engine>` serving the plain HTTP listener " +
			"(raw is the default); the TLS listener (the HTTP/2 cells) is net/http in all, so their HTTP/2 rows differ by noise only.\n")
	}
	w("- Peers run from bench/edge/conf (worker counts automatic, keep-alive to the upstream, an access-log line per request, " +
		"X-Forwarded-For/-Host/-Proto and X-Request-ID set), as the current user, on 127.0.0.1. " +
		"nginx writes the same JSON line as skiff through the same kind of buffer (64 KiB, flushed every 250 ms); " +
		"HAProxy and Caddy have no such buffer for a log file and write each line as it comes.\n")
	if slices.Contains(r.cfg.targets, "go-minimal") {
		w("- go-minimal is no peer but a reference: bench/edge/minimal, the least a proxy written in Go does per request " +
			"(a goroutine per client connection with an upstream connection of its own, the head copied with the same forwarding headers " +
			"and request id, an access line through the same buffer; no routing, balancing, health, metrics, timeouts, streaming or header safety). " +
			"It shows the floor of Go's own overhead, which skiff's edge pays as well. HTTP/1.1 only; it holds a 1 MiB body whole.\n")
	}
	w("- Load: HTTP/1.1 with `wrk -t%d -c%d` (latency percentiles from a Lua `done` hook); HTTP/2 over TLS with `h2load -t%d -c%d -m1` "+
		"(percentiles from its per-request log). The HTTP/1.1 1 KiB cell runs %s per target and round, the others %s.\n",
		r.cfg.threads, r.cfg.conns, r.cfg.threads, r.cfg.conns, r.cfg.dur1k, r.cfg.durOther)
	w("- %d rounds after a 1 s warm-up per target and cell; in each round every cell runs every target once, in an order that rotates per round. "+
		"Ratios are taken within one round (same minute, same noise) and then the median over rounds is reported; "+
		"req/s and latencies are medians over rounds. The load generator shares the machine's cores with the proxy and the backend.\n"+
		"- CPU µs/req is the CPU time (user and system, from /proc) the target's process group used during a run, divided by the requests it served: "+
		"a proxy's cost per request, much less disturbed by other load on the machine than req/s. The backend's and the load generator's CPU are not in it; "+
		"for skiff it is the whole `skiff server`.\n\n",
		r.cfg.rounds)

	names := make([]string, 0, len(r.targets))
	for _, t := range r.targets {
		names = append(names, t.name)
	}
	for _, c := range r.cells {
		w("## %s\n\n", c.label)
		w("| target | req/s | p50 ms | p99 ms | p99.9 ms | ratio to nginx | ratio to no proxy | CPU µs/req | errors |\n")
		w("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
		for _, n := range names {
			ss := r.samples[c.name][n]
			if len(ss) == 0 {
				w("| %s | – | – | – | – | – | – | – | no listener for this protocol |\n", n)
				continue
			}
			var errs, reqs int64
			for _, s := range ss {
				errs += s.errors
				reqs += s.requests
			}
			cpu := "–"
			if v := r.med(c.name, n, sample.cpuPerRequest); v > 0 {
				cpu = fmt.Sprintf("%.1f", v)
			}
			w("| %s | %.0f | %.2f | %.2f | %.2f | %s | %s | %s | %d of %d |\n", n,
				r.med(c.name, n, sample.rps),
				r.med(c.name, n, func(s sample) float64 { return s.p50 / 1000 }),
				r.med(c.name, n, func(s sample) float64 { return s.p99 / 1000 }),
				r.med(c.name, n, func(s sample) float64 { return s.p999 / 1000 }),
				ratioText(r.ratios(c.name, n, "nginx")), ratioText(r.ratios(c.name, n, "noproxy")), cpu, errs, reqs)
		}
		w("\nreq/s per round: ")
		var parts []string
		for _, n := range names {
			var v []string
			for _, s := range r.samples[c.name][n] {
				v = append(v, fmt.Sprintf("%.0f", s.rps()))
			}
			if len(v) > 0 {
				parts = append(parts, fmt.Sprintf("%s %s", n, strings.Join(v, " / ")))
			}
		}
		w("%s.\n\n", strings.Join(parts, "; "))
	}
	w("## The bar\n\n")
	w("HTTP/1.1, 1 KiB: skiff's median ratio to nginx must be at least 1.0 and its p99 within 0.5 ms of nginx's.\n\n")
	for _, n := range names {
		if !strings.HasPrefix(n, "skiff") || len(r.samples["h1-1k"][n]) == 0 || len(r.samples["h1-1k"]["nginx"]) == 0 {
			continue
		}
		ratio := median(r.ratios("h1-1k", n, "nginx"))
		p99 := r.med("h1-1k", n, func(s sample) float64 { return s.p99 / 1000 })
		np99 := r.med("h1-1k", "nginx", func(s sample) float64 { return s.p99 / 1000 })
		verdict := "met"
		if ratio < 1.0 || p99 > np99+0.5 {
			verdict = "NOT met"
		}
		w("- %s: ratio %.2f, p99 %.2f ms against nginx's %.2f ms: **%s**.\n", n, ratio, p99, np99, verdict)
	}
	w("\n## Memory after the load\n\n")
	w("Resident memory (VmRSS, and the peak VmHWM) summed over each target's process group; for skiff that is the whole `skiff server` " +
		"(edge, API, store, controllers), not the app, which runs in a process group of its own.\n\n")
	w("| target | RSS MiB | peak RSS MiB |\n| --- | ---: | ---: |\n")
	for _, t := range r.targets {
		if t.pid == 0 {
			continue
		}
		w("| %s | %.1f | %.1f |\n", t.name, float64(t.rss)/1024, float64(t.hwm)/1024)
	}
	w("\n## Route lookup with 10,000 routes\n\n")
	w("`go test -run '^$' -bench BenchmarkLookup ./internal/edge` (9,000 exact hosts and 1,000 wildcards; half the look-ups hit each): %s\n", r.lookup)
	return b.String()
}

func ratioText(v []float64) string {
	if len(v) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", median(v))
}

var benchLine = regexp.MustCompile(`BenchmarkLookup\S*\s+\d+\s+([0-9.]+) ns/op(.*)`)

// lookupBench runs the edge's route-lookup benchmark and returns its
// figures as text.
func lookupBench(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-bench", "BenchmarkLookup", "-benchtime", "1s", "-count", "3", "./internal/edge").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%w: %s", err, out)
	}
	var ns []float64
	var rest string
	for _, m := range benchLine.FindAllStringSubmatch(string(out), -1) {
		var v float64
		fmt.Sscan(m[1], &v)
		ns = append(ns, v)
		rest = strings.Join(strings.Fields(m[2]), " ")
	}
	if len(ns) == 0 {
		return "", fmt.Errorf("no benchmark line in: %s", out)
	}
	return fmt.Sprintf("median %.0f ns per look-up over %d runs (%s).", median(ns), len(ns), rest), nil
}

// describeMachine lists what the results depend on.
func describeMachine(ctx context.Context, h *harness) []string {
	var m []string
	m = append(m, fmt.Sprintf("CPUs (nproc): %d", runtime.NumCPU()))
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m = append(m, "CPU model: "+strings.TrimSpace(v))
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		line, _, _ := strings.Cut(string(b), "\n")
		m = append(m, "memory: "+strings.Join(strings.Fields(line)[1:], " "))
	}
	if out, err := exec.CommandContext(ctx, "uname", "-srm").Output(); err == nil {
		m = append(m, "kernel: "+strings.TrimSpace(string(out)))
	}
	return m
}
