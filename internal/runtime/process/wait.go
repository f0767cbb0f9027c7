package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

// child is a process this Driver started and therefore reaps.
type child struct {
	pid int
	id  string
	cmd *exec.Cmd
	// mu is held while the group is signalled and while the reaper reaps
	// the leader: until it is reaped the leader's pid (which is also the
	// group id) cannot be reused, so a signal under mu never reaches a
	// stranger.
	mu     sync.Mutex
	reaped bool
	// done is closed once the leader is reaped and exit is set.
	done chan struct{}
	exit instance.Exit
}

// signal sends sig to the child's process group unless it is reaped.
func (c *child) signal(sig unix.Signal) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.reaped {
		return false
	}
	_ = unix.Kill(-c.pid, sig)
	return true
}

// reap waits for the child's leader to exit, kills the rest of its group
// and collects its status.
func (d *Driver) reap(c *child) {
	var info unix.Siginfo
	var err error
	for {
		// WNOWAIT leaves the leader a zombie, holding its pid and group
		// id, while the rest of the group is killed.
		err = unix.Waitid(unix.P_PID, c.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	c.mu.Lock()
	// Only while the zombie pins the pid is the group id surely still
	// ours; if something else reaped the leader, signal nothing.
	if err == nil {
		_ = unix.Kill(-c.pid, unix.SIGKILL)
		if d.cg != nil {
			if err := d.cg.kill(c.id); err != nil {
				d.log.Warn("could not kill what is left of an instance's cgroup", "instance", c.id, "err", err)
			}
		}
	} else {
		d.log.Warn("lost track of an instance's process", "instance", c.id, "pid", c.pid, "err", err)
	}
	_ = c.cmd.Wait() // the status is read from ProcessState below
	c.reaped = true
	c.mu.Unlock()
	exit := exitOf(c.cmd.ProcessState)
	if d.cg != nil {
		exit.OOM = d.cg.oomKilled(c.id)
	}
	c.exit = exit
	close(c.done)
}

// exitOf describes a reaped process's end.
func exitOf(ps *os.ProcessState) instance.Exit {
	e := exitNow()
	if ps == nil {
		return e
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	switch {
	case ok && ws.Signaled():
		e.Signal = unix.SignalName(ws.Signal())
	case ok && ws.Exited():
		e.Code = ws.ExitStatus()
	default:
		e.Code = ps.ExitCode()
	}
	return e
}

// childOf returns the child behind h, if this Driver started it.
func (d *Driver) childOf(h supervisor.Handle) *child {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.children[h.ID]; c != nil && c.pid == h.PID {
		return c
	}
	return nil
}

// Wait blocks until the instance's group leader exits or ctx ends. For a
// process this Driver started it reports the exit status; for one found by
// Recover, which is no longer skiff's child, only the kernel's former parent
// may read the status, so the code is -1.
func (d *Driver) Wait(ctx context.Context, h supervisor.Handle) (instance.Exit, error) {
	if c := d.childOf(h); c != nil {
		select {
		case <-c.done:
			return c.exit, nil
		case <-ctx.Done():
			return instance.Exit{}, fmt.Errorf("wait instance %s: %w", h.ID, ctx.Err())
		}
	}
	p, err := openProc(h)
	if err != nil {
		return instance.Exit{}, fmt.Errorf("wait instance %s: %w", h.ID, err)
	}
	if p != nil {
		defer p.close()
		if err := p.wait(ctx); err != nil {
			return instance.Exit{}, fmt.Errorf("wait instance %s: %w", h.ID, err)
		}
	}
	d.sweep(h)
	// The cgroup is killed only after seeing this very process exit: for a
	// handle that was stale already, a newer run may live in it.
	if d.cg != nil && p != nil {
		if err := d.cg.kill(h.ID); err != nil {
			d.log.Warn("could not kill what is left of an instance's cgroup", "instance", h.ID, "err", err)
		}
	}
	exit := exitNow()
	if d.cg != nil {
		exit.OOM = d.cg.oomKilled(h.ID)
	}
	return exit, nil
}

// proc is a running process pinned by a pidfd and checked to be the
// instance its Handle names.
type proc struct {
	pid int
	f   *os.File
	st  procStat
}

// openProc pins h's process. It returns nil when the process has exited or
// its pid now names another process.
func openProc(h supervisor.Handle) (*proc, error) {
	if h.PID <= 0 {
		return nil, nil
	}
	fd, err := unix.PidfdOpen(h.PID, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open pidfd of pid %d: %w", h.PID, err)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	// Checked after the pidfd is open: a pid names a new process only once
	// the old one is gone, so if the pid still shows our start time now,
	// the pidfd was opened on our process and pins it from here on.
	st, err := readStat(h.PID)
	if err != nil || !sameProcess(h, st) || st.zombie() {
		f.Close()
		return nil, nil
	}
	return &proc{pid: h.PID, f: f, st: st}, nil
}

func (p *proc) close() { p.f.Close() }

// exited tells whether the process has ended (zombies included).
func (p *proc) exited() bool {
	exited := false
	rc, err := p.f.SyscallConn()
	if err != nil {
		return true
	}
	_ = rc.Control(func(fd uintptr) { exited = pidfdReadable(int(fd), 0) })
	return exited
}

// signalGroup sends sig to the process's group while the process is
// alive; it is a no-op once it has exited.
func (p *proc) signalGroup(sig unix.Signal) {
	if p.exited() {
		return
	}
	if p.st.pgrp == p.pid {
		_ = unix.Kill(-p.pid, sig)
		return
	}
	rc, err := p.f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) { _ = unix.PidfdSendSignal(int(fd), sig, nil, 0) })
}

// wait blocks until the process exits or ctx ends. The pidfd becomes
// readable when the process exits, so the wait rides Go's poller.
func (p *proc) wait(ctx context.Context) error {
	rc, err := p.f.SyscallConn()
	if err != nil {
		return err
	}
	if err := p.f.SetReadDeadline(time.Time{}); err != nil {
		return p.pollWait(ctx)
	}
	stop := context.AfterFunc(ctx, func() { _ = p.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	err = rc.Read(func(fd uintptr) bool { return pidfdReadable(int(fd), 0) })
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("wait on pidfd: %w", err)
	}
	return nil
}

// pollWait is wait for a pidfd the poller did not take.
func (p *proc) pollWait(ctx context.Context) error {
	for !p.exited() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// pidfdReadable polls a pidfd, which is readable once its process exited.
func pidfdReadable(fd int, timeoutMs int) bool {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, timeoutMs)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		return err == nil && n > 0 && fds[0].Revents&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) != 0
	}
}

// sameProcess tells whether st is the process h was started as: same
// start ticks when the Handle carries them, else the same start time to
// the tick.
func sameProcess(h supervisor.Handle, st procStat) bool {
	if ticks, ok := refTicks(h.Ref); ok {
		return st.startTicks == ticks
	}
	t, err := startTime(st.startTicks)
	if err != nil {
		return false
	}
	d := t.Sub(h.StartedAt)
	return d > -time.Second/clockTicks && d < time.Second/clockTicks
}

// sweep kills what is left of h's process group after its leader is gone:
// processes in the group that carry the instance's own id and node, each
// pinned and re-checked before the signal, since a group id is free for
// reuse once the group is empty.
func (d *Driver) sweep(h supervisor.Handle) {
	if h.PID <= 0 {
		return
	}
	pids, err := listPIDs()
	if err != nil {
		d.log.Warn("could not look for leftovers of an instance", "instance", h.ID, "err", err)
		return
	}
	for _, pid := range pids {
		st, err := readStat(pid)
		if err != nil || st.pgrp != h.PID || st.zombie() {
			continue
		}
		env, err := readEnviron(pid)
		if err != nil || env["SKIFF_NODE"] != d.nodeID || env["SKIFF_INSTANCE"] != h.ID {
			continue
		}
		p, err := openProc(supervisor.Handle{PID: pid, Ref: startRef(st.startTicks, 0)})
		if err != nil || p == nil {
			continue
		}
		rc, err := p.f.SyscallConn()
		if err == nil {
			_ = rc.Control(func(fd uintptr) { _ = unix.PidfdSendSignal(int(fd), unix.SIGKILL, nil, 0) })
		}
		p.close()
	}
}
