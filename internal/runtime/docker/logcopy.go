package docker

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"

	"github.com/skiff-sh/skiff/internal/supervisor"
)

// Timing of the log copy.
const (
	// posEvery is how often the copy records how far it got; after a crash
	// of skiff at most this much output is copied twice.
	posEvery = 250 * time.Millisecond
	// reconnectMin and reconnectMax bound the pause before following a
	// container's output again after the stream broke.
	reconnectMin = 100 * time.Millisecond
	reconnectMax = 2 * time.Second
	// drainWait bounds how long Wait waits for the copy to catch up with
	// an exited container.
	drainWait = 5 * time.Second
)

// copier copies one container's output into its instance's log file,
// from where the log collector reads it like a process instance's.
type copier struct {
	d      *Driver
	cid    string
	id     string
	cancel context.CancelFunc
	done   chan struct{}

	mu sync.Mutex
	// last is the engine's timestamp of the last line written and line its
	// text, so a resumed copy skips the line it starts with.
	last     time.Time
	lastLine string
	saved    time.Time
}

// follow starts copying h's container output unless a copy runs already.
func (d *Driver) follow(h supervisor.Handle) *copier {
	cid, err := containerID(h)
	if err != nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if c := d.copiers[cid]; c != nil {
		return c
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &copier{d: d, cid: cid, id: h.ID, cancel: cancel, done: make(chan struct{})}
	c.last, c.lastLine = d.readPos(h.ID, cid)
	d.copiers[cid] = c
	go func() {
		defer close(c.done)
		c.run(ctx)
		d.mu.Lock()
		if d.copiers[cid] == c {
			delete(d.copiers, cid)
		}
		d.mu.Unlock()
	}()
	return c
}

// copierOf returns the copy running for container cid, if any.
func (d *Driver) copierOf(cid string) *copier {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.copiers[cid]
}

// run follows the output until the container has ended and all of it is
// copied. When the stream breaks while the container still runs (the
// engine restarted, a connection dropped) it follows again from the last
// line copied.
func (c *copier) run(ctx context.Context) {
	log := c.d.log.With("instance", c.id, "container", short(c.cid))
	pause := reconnectMin
	for {
		err := c.copyOnce(ctx, true)
		if ctx.Err() != nil {
			c.savePos(true)
			return
		}
		running, gone, ierr := c.d.state(ctx, c.cid)
		switch {
		case gone:
			c.savePos(true)
			return
		case ierr == nil && !running:
			// Whatever came after the stream broke, if it did.
			if err != nil {
				if err := c.copyOnce(ctx, false); err != nil {
					log.Warn("could not copy the last output of an instance", "err", err)
				}
			}
			c.savePos(true)
			return
		}
		if err != nil {
			log.Debug("instance output stream broke; following again", "err", err)
		}
		select {
		case <-ctx.Done():
			c.savePos(true)
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, reconnectMax)
	}
}

// copyOnce copies the container's output since the last line copied;
// with follow it goes on until the stream ends.
func (c *copier) copyOnce(ctx context.Context, follow bool) error {
	cli, err := c.d.engine.client()
	if err != nil {
		return err
	}
	c.mu.Lock()
	since := c.last
	c.mu.Unlock()
	opts := client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Timestamps: true, Follow: follow}
	if !since.IsZero() {
		// Inclusive: the line at since comes again and is skipped.
		opts.Since = strconv.FormatInt(since.Unix(), 10) + "." + fmt.Sprintf("%09d", since.Nanosecond())
	}
	body, err := cli.ContainerLogs(ctx, c.cid, opts)
	if err != nil {
		return err
	}
	defer body.Close()
	f, err := os.OpenFile(c.d.LogPath(supervisor.Handle{ID: c.id}), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	defer f.Close()

	pr, pw := io.Pipe()
	go func() {
		// Both streams go to one file, in the order the engine sends them.
		_, err := stdcopy.StdCopy(pw, pw, body)
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	r := bufio.NewReaderSize(pr, 64<<10)
	for {
		line, err := r.ReadString('\n')
		if line != "" {
			if werr := c.write(f, line); werr != nil {
				return werr
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// write appends one timestamped line from the engine to the log file.
func (c *copier) write(f *os.File, line string) error {
	stamp, text, ok := strings.Cut(line, " ")
	ts, err := time.Parse(time.RFC3339Nano, stamp)
	if !ok || err != nil {
		// Not what the engine writes with timestamps; keep the line whole.
		text, ts = line, time.Time{}
	}
	if !strings.HasSuffix(text, "\n") {
		text += "\n"
	}
	c.mu.Lock()
	skip := !ts.IsZero() && (ts.Before(c.last) || ts.Equal(c.last) && text == c.lastLine)
	c.mu.Unlock()
	if skip {
		return nil
	}
	if _, err := f.WriteString(text); err != nil {
		return fmt.Errorf("write log: %w", err)
	}
	if !ts.IsZero() {
		c.mu.Lock()
		c.last, c.lastLine = ts, text
		c.mu.Unlock()
		c.savePos(false)
	}
	return nil
}

// savePos records how far the copy got, at most every posEvery unless
// forced.
func (c *copier) savePos(force bool) {
	c.mu.Lock()
	if c.last.IsZero() || (!force && time.Since(c.saved) < posEvery) {
		c.mu.Unlock()
		return
	}
	c.saved = time.Now()
	data := c.cid + "\n" + c.last.Format(time.RFC3339Nano) + "\n" + c.lastLine
	c.mu.Unlock()
	if err := os.WriteFile(c.d.posPath(c.id), []byte(data), 0o640); err != nil {
		c.d.log.Warn("could not record how far an instance's output was copied", "instance", c.id, "err", err)
	}
}

// readPos reads how far the copy of container cid of instance id got, or
// zero to copy from the start.
func (d *Driver) readPos(id, cid string) (time.Time, string) {
	b, err := os.ReadFile(d.posPath(id))
	if err != nil {
		return time.Time{}, ""
	}
	parts := bytes.SplitN(b, []byte("\n"), 3)
	if len(parts) != 3 || string(parts[0]) != cid {
		return time.Time{}, ""
	}
	ts, err := time.Parse(time.RFC3339Nano, string(parts[1]))
	if err != nil {
		return time.Time{}, ""
	}
	return ts, string(parts[2])
}

// state tells whether container cid runs, or is gone.
func (d *Driver) state(ctx context.Context, cid string) (running, gone bool, err error) {
	cli, err := d.engine.client()
	if err != nil {
		return false, false, err
	}
	res, err := cli.ContainerInspect(ctx, cid, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return false, true, nil
	}
	if err != nil {
		return false, false, err
	}
	return res.Container.State != nil && res.Container.State.Running, false, nil
}

// drain waits, up to drainWait, for the copy of container cid to finish.
func (d *Driver) drain(ctx context.Context, cid string) {
	c := d.copierOf(cid)
	if c == nil {
		return
	}
	select {
	case <-c.done:
	case <-ctx.Done():
	case <-time.After(drainWait):
		d.log.Warn("instance output still being copied after it exited", "container", short(cid))
	}
}

// stopCopy ends the copy of container cid.
func (d *Driver) stopCopy(cid string) {
	if c := d.copierOf(cid); c != nil {
		c.cancel()
		<-c.done
	}
}

// Close stops copying every container's output, recording how far each
// copy got; the containers run on, and a later driver's Recover resumes
// the copies.
func (d *Driver) Close() {
	d.mu.Lock()
	cs := make([]*copier, 0, len(d.copiers))
	for _, c := range d.copiers {
		cs = append(cs, c)
	}
	d.mu.Unlock()
	for _, c := range cs {
		c.cancel()
		<-c.done
	}
}
