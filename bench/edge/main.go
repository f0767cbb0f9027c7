// Command edge is skiff's edge benchmark (`make bench-edge`): it puts the
// same fixed backend behind no proxy, a real `skiff server` with the
// backend deployed as an app, nginx, HAProxy and Caddy, drives the same
// load through each with wrk (HTTP/1.1) and h2load (HTTP/2 over TLS) in
// interleaved rounds, and writes the medians to results.md.
//
// Everything stays on 127.0.0.1, every run is bounded in time, and every
// process it starts is stopped when it ends. Peers run from the configs
// in conf/, as the current user, with their pid and log files in a
// temporary directory.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// config is what the runner takes from its flags.
type config struct {
	skiff     string
	out       string
	rounds    int
	threads   int
	conns     int
	dur1k     time.Duration
	durOther  time.Duration
	cells     []string
	targets   []string
	engines   []string
	toolsDir  string
	keep      bool
	lookupRun bool
}

func main() {
	var cfg config
	var cells, targets, engines string
	home, _ := os.UserHomeDir()
	flag.StringVar(&cfg.skiff, "skiff", "bin/skiff", "the skiff binary to benchmark (make builds it)")
	flag.StringVar(&cfg.out, "out", "bench/edge/results.md", "where to write the results")
	flag.IntVar(&cfg.rounds, "rounds", 5, "interleaved rounds; every target runs every cell once per round")
	flag.IntVar(&cfg.threads, "threads", 2, "load generator threads")
	flag.IntVar(&cfg.conns, "conns", 64, "load generator connections")
	flag.DurationVar(&cfg.dur1k, "d1k", 5*time.Second, "duration of each HTTP/1.1 1 KiB run (the cell with the bar)")
	flag.DurationVar(&cfg.durOther, "d", 3*time.Second, "duration of each run of the other cells")
	flag.StringVar(&cells, "cells", "h1-1k,h1-1m,h2-1k,h2-1m", "cells to run: h1|h2 - 1k|1m")
	flag.StringVar(&targets, "targets", "noproxy,skiff,nginx,haproxy,caddy,go-minimal", "targets to run (go-minimal: bench/edge/minimal, the floor of a proxy in Go, HTTP/1.1 only)")
	flag.StringVar(&engines, "engines", "", "skiff edge engines to run side by side (e.g. nethttp,fasthttp); empty: the server's default only")
	flag.StringVar(&cfg.toolsDir, "tools", filepath.Join(home, ".cache", "skiff-tools", "bin"), "where Caddy is installed (go install), reused when present")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the temporary directory (configs, logs) for inspection")
	flag.BoolVar(&cfg.lookupRun, "lookup", true, "run BenchmarkLookup for the route-lookup figure")
	flag.Parse()
	cfg.cells = splitList(cells)
	cfg.targets = splitList(targets)
	cfg.engines = splitList(engines)

	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("bench-edge failed", "err", err)
		os.Exit(1)
	}
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	for _, c := range cfg.cells {
		if _, err := parseCell(c); err != nil {
			return err
		}
	}
	if cfg.rounds < 1 {
		return errors.New("-rounds must be at least 1")
	}
	dir, err := os.MkdirTemp("", "skiff-bench-edge-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	// Peers started as root hand work to users that must reach their
	// files (nginx workers, skiff's app user).
	os.Chmod(dir, 0o755)
	if cfg.keep {
		log.Info("keeping the temporary directory", "dir", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	h := &harness{cfg: cfg, dir: dir, log: log}
	defer h.stopAll()
	if err := h.setUp(ctx); err != nil {
		return err
	}
	res, err := h.measure(ctx)
	if err != nil {
		return err
	}
	if cfg.lookupRun {
		res.lookup, err = lookupBench(ctx)
		if err != nil {
			log.Warn("route lookup benchmark failed", "err", err)
			res.lookup = "failed: " + err.Error()
		}
	}
	res.machine = describeMachine(ctx, h)
	res.cfg = cfg
	if err := os.WriteFile(cfg.out, []byte(res.markdown()), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	log.Info("results written", "file", cfg.out)
	return nil
}
