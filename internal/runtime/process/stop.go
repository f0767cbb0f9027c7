package process

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-sh/skiff/internal/supervisor"
)

// killWait bounds the wait for a process to vanish after SIGKILL.
const killWait = 5 * time.Second

// Stop sends SIGTERM to the instance's process group, waits up to grace
// for the leader to exit, then sends SIGKILL. It signals a pid only after
// checking it still names the process that was started (never a reused
// pid). An instance already gone is no error. When ctx ends first, the
// group is killed at once.
func (d *Driver) Stop(ctx context.Context, h supervisor.Handle, grace time.Duration) error {
	if c := d.childOf(h); c != nil {
		return d.stopChild(ctx, c, grace)
	}
	p, err := openProc(h)
	if err != nil {
		return fmt.Errorf("stop instance %s: %w", h.ID, err)
	}
	if p == nil {
		d.sweep(h)
		return nil
	}
	defer p.close()
	p.signalGroup(unix.SIGTERM)
	if grace > 0 {
		gctx, cancel := context.WithTimeout(ctx, grace)
		_ = p.wait(gctx)
		cancel()
	}
	if !p.exited() {
		d.log.Info("instance did not stop in time; killing it", "instance", h.ID, "grace", grace)
		p.signalGroup(unix.SIGKILL)
		if d.cg != nil {
			_ = d.cg.kill(h.ID)
		}
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killWait)
		err := p.wait(kctx)
		cancel()
		if err != nil {
			return fmt.Errorf("stop instance %s: pid %d still runs after SIGKILL: %w", h.ID, h.PID, err)
		}
	}
	d.sweep(h)
	return ctx.Err()
}

func (d *Driver) stopChild(ctx context.Context, c *child, grace time.Duration) error {
	if !c.signal(unix.SIGTERM) {
		return nil
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	select {
	case <-c.done:
		return nil
	case <-timer.C:
		d.log.Info("instance did not stop in time; killing it", "instance", c.id, "grace", grace)
	case <-ctx.Done():
	}
	c.signal(unix.SIGKILL)
	if d.cg != nil {
		_ = d.cg.kill(c.id)
	}
	select {
	case <-c.done:
		return ctx.Err()
	case <-time.After(killWait):
		return fmt.Errorf("stop instance %s: pid %d still runs after SIGKILL", c.id, c.pid)
	}
}
