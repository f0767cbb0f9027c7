package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
)

// waitRetry is the pause before Wait is tried again after it failed for a
// reason other than the instance exiting.
const waitRetry = time.Second

// launchLocked starts in's run goroutine: adopt continues with its
// current handle (a recovered instance), otherwise it is started. Callers
// hold s.mu. It does nothing once the supervisor is closed: the instance
// stays recorded and the next Start starts it.
func (s *Supervisor) launchLocked(in *inst, tmpl instance.Template, adopt bool) {
	if s.closed || s.ctx == nil {
		return
	}
	ctx, cancel := context.WithCancel(s.ctx)
	in.cancel = cancel
	in.done = make(chan struct{})
	s.wg.Add(1)
	go s.run(ctx, in, tmpl, adopt)
}

// halt ends in's run goroutine and waits for it, leaving its process
// alone. Afterwards in.h is the last handle it had.
func (s *Supervisor) halt(in *inst) {
	s.mu.Lock()
	cancel, done := in.cancel, in.done
	s.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

// run is the life of one instance slot: start (or adopt), probe, wait for
// the exit, back off, start again, until ctx ends. Ending ctx never stops
// the process; whoever cancels decides its fate.
func (s *Supervisor) run(ctx context.Context, in *inst, tmpl instance.Template, adopt bool) {
	defer s.wg.Done()
	defer close(in.done)
	log := s.log.With("app", tmpl.App, "release", tmpl.Release, "instance", in.id)
	exitsInARow := 0
	for {
		var h Handle
		if adopt {
			adopt = false
			s.mu.Lock()
			h = in.h
			s.mu.Unlock()
		} else {
			var err error
			h, err = s.driver.Start(ctx, in.id, tmpl)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				log.Warn("instance failed to start", "err", err)
				exit := instance.Exit{Code: -1, At: time.Now(), LogTail: []string{err.Error()}}
				delay := s.backoff(exitsInARow)
				exitsInARow++
				if !s.crashed(ctx, in, exit, delay, "failed to start: "+err.Error()) {
					return
				}
				continue
			}
			s.mu.Lock()
			in.h = h
			in.running = true
			in.state = instance.Starting
			in.message = "waiting for the first passing probe"
			in.nextStart = time.Time{}
			s.mu.Unlock()
			s.hook("start.returned")
			// Recorded durably before anything reports it started: after a
			// restart, only a recorded process is adopted. One that cannot
			// be recorded is stopped and counts as a failed start (a crash
			// before this line leaves it unrecorded, and recovery stops it).
			if err := s.persist(); err != nil {
				log.Error("could not record a started instance; stopping it", "err", err)
				if err := s.driver.Stop(context.WithoutCancel(ctx), h, s.opts.StopGrace); err != nil {
					log.Error("could not stop an unrecorded instance", "err", err)
				}
				if err := s.driver.Cleanup(context.WithoutCancel(ctx), h); err != nil {
					log.Warn("could not clean up after an unrecorded instance", "err", err)
				}
				s.mu.Lock()
				in.running = false
				s.mu.Unlock()
				exit := instance.Exit{Code: -1, At: time.Now(), LogTail: []string{err.Error()}}
				delay := s.backoff(exitsInARow)
				exitsInARow++
				if !s.crashed(ctx, in, exit, delay, "started, but skiff could not record it: "+err.Error()) {
					return
				}
				continue
			}
			s.emit(Event{App: tmpl.App, Release: tmpl.Release, Instance: in.id, Kind: EventStarted,
				Message: fmt.Sprintf("started at %s", h.Endpoint)})
			if s.opts.Logs != nil {
				s.opts.Logs.Track(tmpl.App, tmpl.Release, in.id, s.driver.LogPath(h))
			}
			s.notify.send(tmpl.App)
		}

		pctx, stopProbe := context.WithCancel(ctx)
		probed := make(chan struct{})
		go func() {
			defer close(probed)
			s.probe(pctx, in, h, tmpl)
		}()
		exit, ok := s.wait(ctx, h, log)
		stopProbe()
		<-probed
		if !ok {
			return
		}
		if exit.At.IsZero() {
			exit.At = time.Now()
		}
		if !h.StartedAt.IsZero() && exit.At.Sub(h.StartedAt) >= s.opts.BackoffReset {
			exitsInARow = 0
		}
		exit.LogTail = s.tail(h)
		delay := s.backoff(exitsInARow)
		exitsInARow++
		msg := "exited with code " + fmt.Sprint(exit.Code)
		if exit.Signal != "" {
			msg = "killed by " + exit.Signal
		}
		if exit.OOM {
			// The code (137) or signal alone reads like any kill; what the
			// user must change is the memory limit.
			msg = "killed: out of memory (" + msg + "; raise resources.memory)"
		}
		if !s.crashed(ctx, in, exit, delay, msg) {
			return
		}
	}
}

// wait waits for h to exit. It retries a Wait that fails while ctx lives;
// ok is false once ctx ends.
func (s *Supervisor) wait(ctx context.Context, h Handle, log *slog.Logger) (instance.Exit, bool) {
	for {
		exit, err := s.driver.Wait(ctx, h)
		if ctx.Err() != nil {
			return instance.Exit{}, false
		}
		if err == nil {
			return exit, true
		}
		log.Warn("waiting for instance failed; trying again", "err", err)
		select {
		case <-ctx.Done():
			return instance.Exit{}, false
		case <-time.After(waitRetry):
		}
	}
}

// crashed records an exit (or failed start), reports it, waits out the
// backoff and counts the restart. It returns false when ctx ended first.
func (s *Supervisor) crashed(ctx context.Context, in *inst, exit instance.Exit, delay time.Duration, msg string) bool {
	// The backoff counts from the exit, not from when it was noticed.
	next := exit.At.Add(delay)
	s.mu.Lock()
	in.running = false
	in.state = instance.CrashLoop
	in.lastExit = &exit
	in.nextStart = next
	in.message = msg + "; restarting in " + delay.Round(time.Millisecond).String()
	restarts := in.restarts
	key := in.key
	s.mu.Unlock()
	s.notify.send(key.app)
	s.emit(Event{App: key.app, Release: key.release, Instance: in.id, Kind: EventExited, Message: msg,
		Data: map[string]any{"code": exit.Code, "signal": exit.Signal, "oom": exit.OOM, "log_tail": exit.LogTail}})
	s.emit(Event{App: key.app, Release: key.release, Instance: in.id, Kind: EventRestarting,
		Message: "restarting in " + delay.Round(time.Millisecond).String(),
		Data:    map[string]any{"delay_ms": delay.Milliseconds(), "restarts": restarts + 1}})
	timer := time.NewTimer(time.Until(next))
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
	}
	s.mu.Lock()
	in.restarts++
	s.mu.Unlock()
	return true
}
