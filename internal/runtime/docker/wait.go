package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

// oomGrace is how long Wait waits for the engine to report that a killed
// container was killed for its memory.
const oomGrace = time.Second

// Wait blocks until the instance's container stops or ctx ends, then
// reports its exit code and whether the kernel killed it for its memory
// limit. It works the same for adopted containers: the engine keeps the
// status. A container that no longer exists ended in an unknown way.
func (d *Driver) Wait(ctx context.Context, h supervisor.Handle) (instance.Exit, error) {
	cid, err := containerID(h)
	if err != nil {
		return instance.Exit{Code: -1, At: time.Now()}, nil
	}
	cli, err := d.engine.client()
	if err != nil {
		return instance.Exit{}, fmt.Errorf("wait instance %s: %w", h.ID, err)
	}
	res := cli.ContainerWait(ctx, cid, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case <-res.Result:
	case err := <-res.Error:
		if cerrdefs.IsNotFound(err) {
			return instance.Exit{Code: -1, At: time.Now()}, nil
		}
		if ctx.Err() != nil {
			return instance.Exit{}, fmt.Errorf("wait instance %s: %w", h.ID, ctx.Err())
		}
		return instance.Exit{}, fmt.Errorf("wait instance %s: %w", h.ID, err)
	case <-ctx.Done():
		return instance.Exit{}, fmt.Errorf("wait instance %s: %w", h.ID, ctx.Err())
	}
	exit := instance.Exit{Code: -1, At: time.Now()}
	if ins, err := cli.ContainerInspect(ctx, cid, client.ContainerInspectOptions{}); err == nil && ins.Container.State != nil {
		st := ins.Container.State
		exit.Code = st.ExitCode
		exit.OOM = st.OOMKilled
		if t, err := time.Parse(time.RFC3339Nano, st.FinishedAt); err == nil && t.Year() > 1 {
			exit.At = t
		}
		if !exit.OOM && exit.Code == 137 {
			started, _ := time.Parse(time.RFC3339Nano, st.StartedAt)
			exit.OOM = d.oomKilled(ctx, cli, cid, started)
		}
	}
	// The crash report's log tail must hold the last lines.
	d.drain(ctx, cid)
	return exit, nil
}

// Stop asks the container to end (SIGTERM to its main process), lets the
// engine wait up to grace (rounded up to whole seconds, the engine's
// unit), then kill it. A container that is gone is no error. When ctx ends
// first the container is killed at once.
func (d *Driver) Stop(ctx context.Context, h supervisor.Handle, grace time.Duration) error {
	cid, err := containerID(h)
	if err != nil {
		return nil
	}
	cli, err := d.engine.client()
	if err != nil {
		return fmt.Errorf("stop instance %s: %w", h.ID, err)
	}
	secs := int(math.Ceil(grace.Seconds()))
	_, err = cli.ContainerStop(ctx, cid, client.ContainerStopOptions{Timeout: &secs})
	switch {
	case err == nil, cerrdefs.IsNotFound(err):
		return nil
	case ctx.Err() != nil:
		kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := cli.ContainerKill(kctx, cid, client.ContainerKillOptions{Signal: "KILL"}); err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsConflict(err) {
			return fmt.Errorf("stop instance %s: kill container %s: %w", h.ID, short(cid), err)
		}
		return ctx.Err()
	}
	return fmt.Errorf("stop instance %s: stop container %s: %w", h.ID, short(cid), err)
}

// Cleanup removes the instance's container (its output copied first) and
// the record of how far the copy got. The log file stays for the log
// collector.
func (d *Driver) Cleanup(ctx context.Context, h supervisor.Handle) error {
	cid, err := containerID(h)
	if err != nil {
		return nil
	}
	d.drain(ctx, cid)
	d.stopCopy(cid)
	cli, err := d.engine.client()
	if err != nil {
		return fmt.Errorf("cleanup instance %s: %w", h.ID, err)
	}
	if _, err := cli.ContainerRemove(ctx, cid, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("cleanup instance %s: remove container %s: %w", h.ID, short(cid), err)
	}
	if c, _ := d.readPos(h.ID, cid); !c.IsZero() {
		_ = removeIfExists(d.posPath(h.ID))
	}
	return nil
}

// oomKilled tells whether the engine reported an OOM kill of container
// cid since it started, waiting up to oomGrace for a report still on its
// way. The container's state is not enough: Docker 20.10 (cgroup v1) sets
// State.OOMKilled only when the kernel's OOM event reaches it before the
// exit, and under load it comes after (seen 350ms after): the state then
// says no OOM for good, but the engine still logs an "oom" event.
func (d *Driver) oomKilled(ctx context.Context, cli *client.Client, cid string, started time.Time) bool {
	ctx, cancel := context.WithTimeout(ctx, oomGrace+pingTimeout)
	defer cancel()
	since := time.Now().Add(-time.Minute)
	if !started.IsZero() {
		since = started.Add(-time.Second)
	}
	res := cli.Events(ctx, client.EventsListOptions{
		Since: eventStamp(since),
		// Until in the future: the engine sends the past events, then new
		// ones until then.
		Until:   eventStamp(time.Now().Add(oomGrace)),
		Filters: make(client.Filters).Add("type", string(events.ContainerEventType)).Add("container", cid).Add("event", string(events.ActionOOM)),
	})
	for {
		select {
		case m := <-res.Messages:
			if m.Action == events.ActionOOM {
				return true
			}
		case err := <-res.Err:
			if err != nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
				d.log.Debug("could not read the engine's events to tell an OOM kill", "container", short(cid), "err", err)
			}
			return false
		}
	}
}

// eventStamp is a time as the events API takes it: seconds.nanoseconds.
func eventStamp(t time.Time) string {
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}
