package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// cell is one column of the benchmark: a protocol and a response size.
type cell struct {
	name  string // "h1-1k"
	h2    bool
	path  string // "/1k" or "/1m"
	label string // "HTTP/1.1, 1 KiB"
}

func parseCell(s string) (cell, error) {
	proto, size, ok := strings.Cut(s, "-")
	c := cell{name: s}
	switch {
	case !ok:
	case proto == "h1":
		c.label = "HTTP/1.1"
	case proto == "h2":
		c.h2, c.label = true, "HTTP/2 (TLS)"
	}
	switch size {
	case "1k":
		c.path, c.label = "/1k", c.label+", 1 KiB"
	case "1m":
		c.path, c.label = "/1m", c.label+", 1 MiB"
	}
	if c.path == "" || !strings.Contains(c.label, "HTTP") {
		return cell{}, fmt.Errorf("cell %q: expected h1 or h2, a dash, and 1k or 1m (e.g. h1-1k)", s)
	}
	return c, nil
}

// sample is one run of the load against one target.
type sample struct {
	requests int64
	errors   int64
	seconds  float64
	// latencies in microseconds
	p50, p99, p999 float64
	// cpu is the CPU time (user and system) the target's process group
	// used during the run, in seconds; 0 for a target without one.
	cpu float64
}

// cpuPerRequest is the target's CPU time per request, in microseconds.
func (s sample) cpuPerRequest() float64 {
	if s.requests <= 0 {
		return 0
	}
	return s.cpu / float64(s.requests) * 1e6
}

func (s sample) rps() float64 {
	if s.seconds <= 0 {
		return 0
	}
	return float64(s.requests) / s.seconds
}

// measure runs every round: in each, every cell, and in each cell every
// target once, in an order that rotates from round to round so that no
// target always runs first (or right after a heavy one).
func (h *harness) measure(ctx context.Context) (*results, error) {
	res := &results{samples: map[string]map[string][]sample{}, targets: h.targets, versions: h.versions}
	for _, name := range h.cfg.cells {
		c, _ := parseCell(name)
		res.cells = append(res.cells, c)
		res.samples[c.name] = map[string][]sample{}
	}
	if v := versionOf(ctx, "wrk", "-v"); v != "" {
		h.versions["wrk"] = v
	}
	if v := versionOf(ctx, "h2load", "--version"); v != "" {
		h.versions["h2load"] = v
	}
	// A short warm-up per target and cell: connection pools, JIT-free
	// but page-cache and allocator warm.
	for _, c := range res.cells {
		for _, t := range h.targets {
			if _, err := h.load(ctx, t, c, time.Second); err != nil {
				return nil, fmt.Errorf("warm-up %s %s: %w", t.name, c.name, err)
			}
		}
	}
	start := time.Now()
	for round := range h.cfg.rounds {
		for _, c := range res.cells {
			d := h.cfg.durOther
			if c.name == "h1-1k" {
				d = h.cfg.dur1k
			}
			n := len(h.targets)
			for i := range n {
				t := h.targets[(i+round)%n]
				s, err := h.load(ctx, t, c, d)
				if err != nil {
					return nil, fmt.Errorf("round %d, %s, %s: %w", round+1, c.name, t.name, err)
				}
				if s == nil {
					continue
				}
				res.samples[c.name][t.name] = append(res.samples[c.name][t.name], *s)
				h.log.Info("run", "round", round+1, "cell", c.name, "target", t.name,
					"rps", int(s.rps()), "p50_ms", s.p50/1000, "p99_ms", s.p99/1000, "cpu_us_per_req", int(s.cpuPerRequest()*10)/10.0, "errors", s.errors)
			}
		}
	}
	res.elapsed = time.Since(start)
	for _, t := range h.targets {
		if t.pid != 0 {
			t.rss, t.hwm = memoryOf(t.pid)
		}
	}
	return res, nil
}

// load runs one load against t for d; nil means t has no listener for c.
func (h *harness) load(ctx context.Context, t *target, c cell, d time.Duration) (*sample, error) {
	base := t.h1
	if c.h2 {
		base = t.h2
	}
	if base == "" {
		return nil, nil
	}
	// Bounded: the load tool stops itself after d; the context is a
	// backstop for a tool that hangs.
	ctx, cancel := context.WithTimeout(ctx, d+30*time.Second)
	defer cancel()
	var before float64
	if t.pid != 0 {
		before = cpuOf(t.pid)
	}
	var s *sample
	var err error
	if c.h2 {
		s, err = h.h2load(ctx, base+c.path, d)
	} else {
		s, err = h.wrk(ctx, base+c.path, d)
	}
	if s != nil && t.pid != 0 {
		s.cpu = cpuOf(t.pid) - before
	}
	return s, err
}

var wrkLine = regexp.MustCompile(`BENCH requests=(\d+) duration_us=(\d+) errors=(\d+) p50_us=(\d+) p99_us=(\d+) p999_us=(\d+)`)

func (h *harness) wrk(ctx context.Context, url string, d time.Duration) (*sample, error) {
	script, err := filepath.Abs("bench/edge/conf/wrk.lua")
	if err != nil {
		return nil, err
	}
	out, err := exec.CommandContext(ctx, "wrk", "-t", strconv.Itoa(h.cfg.threads), "-c", strconv.Itoa(h.cfg.conns),
		"-d", fmt.Sprintf("%ds", int(d.Seconds())), "--timeout", "5s", "-s", script,
		"-H", "Host: "+benchHost, url).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("wrk %s: %w: %s", url, err, out)
	}
	m := wrkLine.FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("wrk %s: no result line in: %s", url, out)
	}
	n := make([]float64, 6)
	for i := range n {
		n[i], _ = strconv.ParseFloat(string(m[i+1]), 64)
	}
	return &sample{requests: int64(n[0]), seconds: n[1] / 1e6, errors: int64(n[2]), p50: n[3], p99: n[4], p999: n[5]}, nil
}

var (
	h2Finished = regexp.MustCompile(`finished in ([0-9.]+)(m?s),`)
	h2Requests = regexp.MustCompile(`requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored`)
)

// h2load runs h2load over TLS with ALPN h2 and takes latency percentiles
// from its per-request log, since h2load itself prints only mean and
// spread.
func (h *harness) h2load(ctx context.Context, url string, d time.Duration) (*sample, error) {
	logFile, err := os.CreateTemp(h.dir, "h2load-*.log")
	if err != nil {
		return nil, err
	}
	logFile.Close()
	defer os.Remove(logFile.Name())
	out, err := exec.CommandContext(ctx, "h2load", "-t", strconv.Itoa(h.cfg.threads), "-c", strconv.Itoa(h.cfg.conns),
		"-m", "1", "-D", strconv.Itoa(int(d.Seconds())), "--log-file", logFile.Name(),
		"-H", ":authority: "+benchHost, url).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("h2load %s: %w: %s", url, err, out)
	}
	fm, rm := h2Finished.FindSubmatch(out), h2Requests.FindSubmatch(out)
	if fm == nil || rm == nil {
		return nil, fmt.Errorf("h2load %s: no result in: %s", url, out)
	}
	secs, _ := strconv.ParseFloat(string(fm[1]), 64)
	if string(fm[2]) == "ms" {
		secs /= 1000
	}
	succeeded, _ := strconv.ParseInt(string(rm[4]), 10, 64)
	failed, _ := strconv.ParseInt(string(rm[5]), 10, 64)
	errored, _ := strconv.ParseInt(string(rm[6]), 10, 64)
	lat, err := readH2Log(logFile.Name())
	if err != nil {
		return nil, err
	}
	if !bytes.Contains(out, []byte("Application protocol: h2")) {
		return nil, fmt.Errorf("h2load %s: did not negotiate h2: %s", url, out)
	}
	return &sample{requests: succeeded, errors: failed + errored, seconds: secs,
		p50: percentile(lat, 50), p99: percentile(lat, 99), p999: percentile(lat, 99.9)}, nil
}

// readH2Log reads the durations (µs, third column) of h2load's log.
func readH2Log(path string) ([]float64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var lat []float64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 3 {
			continue
		}
		v, err := strconv.ParseFloat(fields[2], 64)
		if err != nil {
			continue
		}
		lat = append(lat, v)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read h2load log: %w", err)
	}
	slices.Sort(lat)
	return lat, nil
}

// percentile of sorted values, nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted)) + 0.5)
	return sorted[min(max(i-1, 0), len(sorted)-1)]
}

// median of unsorted values; 0 for none.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// memoryOf sums the resident and peak resident memory, in KiB, of every
// process in pid's process group (nginx's workers, for one), which
// counts shared pages once per process.
func memoryOf(pid int) (rss, hwm int64) {
	for _, p := range processGroup(pid) {
		r, w := processMemory(p)
		rss, hwm = rss+r, hwm+w
	}
	return rss, hwm
}

// cpuOf sums the CPU time, user and system, in seconds, that every
// process in pid's process group has used so far.
func cpuOf(pid int) float64 {
	var ticks int64
	for _, p := range processGroup(pid) {
		if f := procStat(p); len(f) > 12 {
			u, _ := strconv.ParseInt(f[11], 10, 64)
			s, _ := strconv.ParseInt(f[12], 10, 64)
			ticks += u + s
		}
	}
	return float64(ticks) / clockTicks
}

// clockTicks is the unit of /proc/<pid>/stat's times (USER_HZ), 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// processGroup lists the processes in pid's process group.
func processGroup(pid int) []int {
	var out []int
	pgrp := strconv.Itoa(pid)
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f := procStat(p); len(f) > 2 && f[2] == pgrp {
			out = append(out, p)
		}
	}
	return out
}

// procStat returns the fields of /proc/<pid>/stat after the command
// (state, ppid, pgrp, …), or nil.
func procStat(pid int) []string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	// The command, which may hold spaces, ends with the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return nil
	}
	return strings.Fields(string(stat[i+1:]))
}

func processMemory(pid int) (rss, hwm int64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n
		case "VmHWM":
			hwm = n
		}
	}
	return rss, hwm
}
