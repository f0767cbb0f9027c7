// Package supervisor is the set level of the process and Docker runtimes:
// over a small instance-level Driver it keeps each release's instance set at
// its size, probes instances, restarts those that exit with a growing
// backoff, and reports what runs. It implements controller.Runtime.
//
// The data plane outlives the control plane. Sets, their templates and the
// handles of their instances are written to <StateDir>/sets.json before the
// supervisor acts on them; instances run on when the supervisor stops or
// dies. Start recovers: it asks the Driver which instances of this node
// still run (the Driver finds them by what it put into them, not by what
// the supervisor managed to record), adopts those its sets still want
// without restarting them, stops the rest, and starts what is missing. A
// crash at any point therefore converges on the next Start, with neither
// orphans nor duplicates.
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
)

// Options configure a Supervisor.
type Options struct {
	// Driver runs the instances. Required.
	Driver Driver
	// StateDir is where sets.json lives. Required; created if missing.
	StateDir string
	// Logger receives the supervisor's messages. Default slog.Default().
	Logger *slog.Logger
	// BackoffBase is the first restart delay after an exit; it doubles with
	// each exit in a row. Default 1s.
	BackoffBase time.Duration
	// BackoffMax caps the restart delay. Default 5m.
	BackoffMax time.Duration
	// BackoffReset: an instance that ran this long before it exited is
	// restarted after BackoffBase again. Default 10m.
	BackoffReset time.Duration
	// StopGrace is how long a stopping instance has between SIGTERM and
	// SIGKILL. Default 10s.
	StopGrace time.Duration
	// OnEvent, if set, receives instance lifecycle events (for the event
	// log). It is called from the supervisor's goroutines, never under its
	// locks, and should return quickly.
	OnEvent func(Event)
	// Logs, if set, is told which log files to collect.
	Logs LogTracker
	// TailLog, if set, returns the last n lines of a log file; they go
	// into crash reports (Exit.LogTail and instance.exited events).
	TailLog func(path string, n int) []string
}

// LogTracker is the log collector as the supervisor sees it.
type LogTracker interface {
	// Track starts collecting an instance's log file.
	Track(app string, release int, id, path string)
	// Untrack stops collecting it once the instance is gone for good.
	Untrack(id string)
}

// Event is one step in an instance's life.
type Event struct {
	App      string
	Release  int
	Instance string
	// Kind is one of the Event* constants.
	Kind    string
	Message string
	// Data holds details: code, signal, oom and log_tail for EventExited;
	// delay_ms and restarts for EventRestarting.
	Data map[string]any
}

// Event kinds.
const (
	EventStarted        = "instance.started"
	EventReady          = "instance.ready"
	EventUnready        = "instance.unready"
	EventExited         = "instance.exited"
	EventRestarting     = "instance.restarting"
	EventLivenessFailed = "instance.liveness_failed"
	EventStopped        = "instance.stopped"
	EventAdopted        = "instance.adopted"
	EventOrphanStopped  = "instance.orphan_stopped"
	// EventImpostorStopped: a process carried a recorded instance's
	// identity without being the process skiff started; it was stopped
	// and never routed. A security event: an app may have forged it.
	EventImpostorStopped = "instance.impostor_stopped"
)

var (
	// ErrBadOptions means Options miss something required.
	ErrBadOptions = errors.New("invalid supervisor options")
	// ErrNotStarted means a method was called before Start finished.
	ErrNotStarted = errors.New("supervisor not started")
	// ErrClosed means the supervisor was closed.
	ErrClosed = errors.New("supervisor closed")
	// ErrInvalid means a request is malformed (bad template or size).
	ErrInvalid = errors.New("invalid request")
	// ErrInstanceNotFound means no set of the app holds that instance.
	ErrInstanceNotFound = errors.New("instance not found")
	// ErrBadState means sets.json cannot be read; the supervisor refuses to
	// start rather than forget what runs.
	ErrBadState = errors.New("unreadable supervisor state")
)

const (
	defaultBackoffBase  = time.Second
	defaultBackoffMax   = 5 * time.Minute
	defaultBackoffReset = 10 * time.Minute
	defaultStopGrace    = 10 * time.Second
	// tailLines is how many log lines a crash report carries.
	tailLines = 20
)

// Supervisor keeps instance sets at size over a Driver. It implements
// controller.Runtime.
type Supervisor struct {
	opts   Options
	driver Driver
	log    *slog.Logger
	path   string
	notify *notifier

	// persistMu orders writes of sets.json: each write snapshots the state
	// while holding it, so a later write never carries older state.
	persistMu sync.Mutex

	mu       sync.Mutex
	starting bool
	started  bool
	closed   bool
	ctx      context.Context
	cancel   context.CancelFunc
	sets     map[setKey]*set
	// appLocks serialize changes to one app's sets (Scale, Remove,
	// DeleteSet), which may wait out stop graces, without holding mu.
	appLocks map[string]*sync.Mutex
	wg       sync.WaitGroup

	// crashHook, set only by tests, is called at the points where a crash
	// is most likely to leave state and the world apart.
	crashHook func(point string)
}

// New returns a Supervisor. It does nothing until Start.
func New(opts Options) (*Supervisor, error) {
	if opts.Driver == nil {
		return nil, fmt.Errorf("new supervisor: %w: Driver is required", ErrBadOptions)
	}
	if opts.StateDir == "" {
		return nil, fmt.Errorf("new supervisor: %w: StateDir is required", ErrBadOptions)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.BackoffBase <= 0 {
		opts.BackoffBase = defaultBackoffBase
	}
	if opts.BackoffMax <= 0 {
		opts.BackoffMax = defaultBackoffMax
	}
	if opts.BackoffMax < opts.BackoffBase {
		opts.BackoffMax = opts.BackoffBase
	}
	if opts.BackoffReset <= 0 {
		opts.BackoffReset = defaultBackoffReset
	}
	if opts.StopGrace <= 0 {
		opts.StopGrace = defaultStopGrace
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("new supervisor: create state directory: %w", err)
	}
	return &Supervisor{
		opts:     opts,
		driver:   opts.Driver,
		log:      opts.Logger.With("component", "supervisor", "runtime", opts.Driver.Capabilities().Name),
		path:     filepath.Join(opts.StateDir, stateFileName),
		notify:   newNotifier(),
		sets:     make(map[setKey]*set),
		appLocks: make(map[string]*sync.Mutex),
	}, nil
}

// Close stops the supervisor's goroutines without stopping any instance:
// the data plane outlives the control plane, and the next Start adopts it.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.notify.close()
	return nil
}

// emit sends an event to OnEvent. Never call it holding s.mu.
func (s *Supervisor) emit(e Event) {
	if s.opts.OnEvent != nil {
		s.opts.OnEvent(e)
	}
}

// hook marks a crash point for tests.
func (s *Supervisor) hook(point string) {
	if s.crashHook != nil {
		s.crashHook(point)
	}
}

// ready checks that the supervisor may take requests. Callers hold s.mu.
func (s *Supervisor) readyLocked() error {
	switch {
	case s.closed:
		return ErrClosed
	case !s.started:
		return ErrNotStarted
	}
	return nil
}

// appLock returns the lock that serializes changes to app's sets.
func (s *Supervisor) appLock(app string) *sync.Mutex {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.appLocks[app]
	if l == nil {
		l = new(sync.Mutex)
		s.appLocks[app] = l
	}
	return l
}

// backoff is the restart delay after the given number of exits in a row
// before this one: base, doubling, capped.
func (s *Supervisor) backoff(exitsBefore int) time.Duration {
	d := s.opts.BackoffBase
	for i := 0; i < exitsBefore && d < s.opts.BackoffMax; i++ {
		d *= 2
	}
	return min(d, s.opts.BackoffMax)
}

// tail returns the last lines of an instance's log, if a reader is set.
func (s *Supervisor) tail(h Handle) []string {
	if s.opts.TailLog == nil {
		return nil
	}
	return s.opts.TailLog(s.driver.LogPath(h), tailLines)
}

// instanceState is what Instance.State reports: Draining wins over what
// the probes say, since a leaving instance must get no traffic.
func instanceState(in *inst) instance.State {
	if in.draining {
		return instance.Draining
	}
	return in.state
}
