package runtimetest

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/logs"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

// Supervised starts a supervisor over d with state in dir, set up as the
// conformance scenarios expect (fast backoff, a short stop grace), for a
// Harness.New of a driver-level runtime.
func Supervised(t *testing.T, d supervisor.Driver, dir string) *supervisor.Supervisor {
	t.Helper()
	sup, err := supervisor.New(supervisor.Options{
		Driver:      d,
		StateDir:    dir,
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError})),
		BackoffBase: 50 * time.Millisecond,
		BackoffMax:  400 * time.Millisecond,
		StopGrace:   time.Second,
		TailLog:     logs.TailFile,
	})
	if err != nil {
		t.Fatalf("new supervisor: %v", err)
	}
	if err := sup.Start(context.Background()); err != nil {
		t.Fatalf("start supervisor: %v", err)
	}
	return sup
}
