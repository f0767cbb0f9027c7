package kubernetes

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

// Pod logs reach `skiff logs` the way a Docker container's output does
// on one host: each pod's container log is followed through the API
// (pods/log with follow and timestamps) and appended to a raw file of the
// pod's own under LogOptions.Dir, which the log collector reads like any
// instance's raw file. Going through a raw file, rather than handing
// lines to the collector directly, reuses all the collector already does
// for raw files (offsets persisted after the lines, truncation, resuming
// after a restart, follow), so a pod's lines behave exactly as a
// process's. The instance id is the pod's name.
//
// Beside each raw file a position file records the pod's app and release,
// the timestamp of the last line copied and how many lines carried
// exactly that timestamp. A broken stream or a restart of skiff follows
// again from there (sinceTime has whole seconds; the lines of that second
// already copied are skipped by count) without losing or repeating a
// line; after a crash of skiff at most logPosEvery's worth of lines is
// copied twice. When a container restarts, what its previous run wrote
// after the last line copied is fetched first. A pod that is gone has its
// raw file collected to the end and removed; what it wrote after the
// last line copied and before it was deleted while skiff was down, the
// API no longer serves.

// LogSink collects raw log files: internal/logs's Collector.
type LogSink interface {
	// Track starts collecting the raw file at path as instance id's.
	Track(app string, release int, id, path string)
	// Untrack collects what remains of instance id's file and forgets it.
	Untrack(id string)
}

// LogOptions configure FollowLogs.
type LogOptions struct {
	// Dir holds each followed pod's raw log and position files. Required;
	// created if missing.
	Dir string
	// Sink collects the raw files. Required.
	Sink LogSink
	// Logger defaults to the runtime's.
	Logger *slog.Logger
}

// Timing of pod log following.
const (
	// logPosEvery is how often a follower records how far it got (and
	// at the latest this long after a line); after a crash of skiff at
	// most this much of a pod's output is copied twice. A follower that
	// stops records its position at once.
	logPosEvery = 250 * time.Millisecond
	// logReconnectMin and logReconnectMax bound the pause before a log
	// stream is opened again after it ended or broke.
	logReconnectMin = 100 * time.Millisecond
	logReconnectMax = 2 * time.Second
	// logGoneGrace is how long the stream of a deleted pod may still
	// deliver what was in flight before its follower stops.
	logGoneGrace = time.Second
	// maxLogLine bounds one line in memory; the rest of a longer line is
	// dropped.
	maxLogLine = 1 << 20
)

const (
	rawLogSuffix = ".log"
	posSuffix    = ".pos"
)

// PodLogs follows the logs of the runtime's pods into raw files.
type PodLogs struct {
	r    *Runtime
	opts LogOptions
	log  *slog.Logger
	reg  cache.ResourceEventHandlerRegistration
	wg   sync.WaitGroup

	mu        sync.Mutex
	closed    bool
	followers map[string]*podFollower // by pod name
}

// FollowLogs starts following the log of every skiff pod of the
// namespace whose container has started, resuming where an earlier
// PodLogs on the same Dir stopped, and collects and removes the raw
// files of pods that went meanwhile. Call it after Start; Close stops
// it (pods keep running and a later FollowLogs resumes).
func (r *Runtime) FollowLogs(opts LogOptions) (*PodLogs, error) {
	if err := r.ready(); err != nil {
		return nil, fmt.Errorf("follow pod logs: %w", err)
	}
	if opts.Dir == "" || opts.Sink == nil {
		return nil, errors.New("follow pod logs: a directory and a log sink are required")
	}
	if opts.Logger == nil {
		opts.Logger = r.log
	}
	if err := os.MkdirAll(opts.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("follow pod logs: %w", err)
	}
	p := &PodLogs{r: r, opts: opts, log: opts.Logger, followers: map[string]*podFollower{}}
	reg, err := r.factory.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    p.seen,
		UpdateFunc: func(_, obj any) { p.seen(obj) },
		DeleteFunc: p.deleted,
	})
	if err != nil {
		return nil, fmt.Errorf("follow pod logs: watch pods: %w", err)
	}
	p.reg = reg
	// The cache is synced (Start returned): what it lacks is gone.
	for _, name := range LoggedPods(opts.Dir) {
		if _, err := r.pods.Get(name); apierrors.IsNotFound(err) {
			p.finishGone(name)
		}
	}
	return p, nil
}

// LoggedPods names the pods whose raw log files are in dir: the instance
// ids a PodLogs on dir owns in the log collector, even while it does not
// run.
func LoggedPods(dir string) []string {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var names []string
	for _, e := range ents {
		if name, ok := strings.CutSuffix(e.Name(), rawLogSuffix); ok && e.Type().IsRegular() && name != "" {
			names = append(names, name)
		}
	}
	return names
}

// Close stops following, recording how far each follower got.
func (p *PodLogs) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	for _, f := range p.followers {
		f.cancel()
	}
	p.mu.Unlock()
	if err := p.r.factory.Core().V1().Pods().Informer().RemoveEventHandler(p.reg); err != nil {
		p.log.Warn("stop watching pods for logs", "err", err)
	}
	p.wg.Wait()
}

// seen starts following a pod's log once its container has started.
// Called from the informer: it must not block.
func (p *PodLogs) seen(obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	release, err := strconv.Atoi(pod.Labels[LabelRelease])
	app := pod.Labels[LabelApp]
	if app == "" || err != nil || release <= 0 {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if f := p.followers[pod.Name]; f != nil {
		f.wake()
		return
	}
	if _, ok := containerRun(pod); !ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &podFollower{
		p: p, pod: pod.Name, app: app, release: release,
		raw: filepath.Join(p.opts.Dir, pod.Name+rawLogSuffix), posPath: filepath.Join(p.opts.Dir, pod.Name+posSuffix),
		log:    p.log.With("app", app, "release", release, "instance", pod.Name),
		cancel: cancel, kick: make(chan struct{}, 1),
	}
	p.followers[pod.Name] = f
	p.wg.Go(func() {
		f.run(ctx)
		p.mu.Lock()
		delete(p.followers, f.pod)
		p.mu.Unlock()
		if f.isGone() {
			p.finish(f.pod)
		}
	})
}

// deleted stops following a pod that is gone, after a grace for what its
// stream still delivers.
func (p *PodLogs) deleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	if f := p.followers[pod.Name]; f != nil {
		f.markGone()
		return
	}
	// Never started, or its follower already stopped: only files may be
	// left.
	p.finishGone(pod.Name)
}

// finishGone collects and removes the files of a pod that is gone and
// has no follower.
func (p *PodLogs) finishGone(name string) {
	if _, err := os.Stat(filepath.Join(p.opts.Dir, name+rawLogSuffix)); err != nil {
		return
	}
	p.wg.Go(func() { p.finish(name) })
}

// finish hands the rest of a gone pod's raw file to the sink and removes
// its files.
func (p *PodLogs) finish(name string) {
	raw := filepath.Join(p.opts.Dir, name+rawLogSuffix)
	// The sink may not know the file yet (skiff crashed before it
	// recorded it): tracking again is harmless and collects it.
	if pos := readPos(filepath.Join(p.opts.Dir, name+posSuffix), p.log); pos.App != "" && pos.Release > 0 {
		p.opts.Sink.Track(pos.App, pos.Release, name, raw)
	}
	p.opts.Sink.Untrack(name)
	for _, path := range []string{name + rawLogSuffix, name + posSuffix} {
		if err := os.Remove(filepath.Join(p.opts.Dir, path)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			p.log.Warn("remove log file of a gone pod", "instance", name, "err", err)
		}
	}
}

// containerRun identifies the run of the app's container whose log the
// API serves now (the container's id, and its restart count where the
// cluster leaves the id empty), or reports false while it is not
// running or terminated (waiting to start or to restart).
func containerRun(pod *corev1.Pod) (string, bool) {
	if pod.Spec.NodeName == "" {
		return "", false
	}
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != ContainerName {
			continue
		}
		if cs.State.Running == nil && cs.State.Terminated == nil {
			return "", false
		}
		return cs.ContainerID + "#" + strconv.Itoa(int(cs.RestartCount)), true
	}
	return "", false
}

// logPos is how far a pod's log has been copied.
type logPos struct {
	// App and Release are the pod's, so that the raw file of a pod that
	// went while skiff was down can still be collected as theirs.
	App     string `json:"app"`
	Release int    `json:"release"`
	// Container is the containerRun being followed.
	Container string `json:"container"`
	// Time is the timestamp of the last line copied, and Count how many
	// lines copied carry exactly that timestamp.
	Time  time.Time `json:"time"`
	Count int       `json:"count"`
}

// podFollower copies one pod's log into its raw file.
type podFollower struct {
	p            *PodLogs
	pod, app     string
	release      int
	raw, posPath string
	log          *slog.Logger
	cancel       context.CancelFunc
	kick         chan struct{}

	mu        sync.Mutex
	pos       logPos
	saved     time.Time
	saveTimer *time.Timer
	// stopped: the last position is recorded; nothing writes it again.
	stopped bool
	// gone: the pod is deleted.
	gone bool
	// failing: the last try failed; only changes are logged.
	failing bool
}

func (f *podFollower) wake() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

func (f *podFollower) markGone() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.gone {
		return
	}
	f.gone = true
	time.AfterFunc(logGoneGrace, f.cancel)
	f.wake()
}

func (f *podFollower) isGone() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gone
}

// run follows the pod's log until the pod is gone or the follower is
// stopped, opening the stream again whenever it ends or breaks.
func (f *podFollower) run(ctx context.Context) {
	f.p.opts.Sink.Track(f.app, f.release, f.pod, f.raw)
	pos := readPos(f.posPath, f.log)
	pos.App, pos.Release = f.app, f.release
	f.mu.Lock()
	f.pos = pos
	f.mu.Unlock()
	// Both files exist from the start, so that whoever finds the raw one
	// (FollowLogs, deleted) learns from the other whose it is.
	if out, err := os.OpenFile(f.raw, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640); err != nil {
		f.log.Warn("create raw log", "err", err)
	} else {
		out.Close()
	}
	f.savePos(true)
	defer f.stop()
	pause := logReconnectMin
	for {
		pod, err := f.p.r.pods.Get(f.pod)
		if apierrors.IsNotFound(err) {
			f.mu.Lock()
			f.gone = true
			f.mu.Unlock()
			return
		}
		var run string
		ok := false
		if err == nil {
			run, ok = containerRun(pod)
		}
		if ok {
			began := time.Now()
			err := f.copy(ctx, run)
			if ctx.Err() != nil {
				return
			}
			if err != nil {
				f.report(err)
			}
			// A stream that ran a while broke or ended for a reason of
			// its own: follow again soon. One that ends at once (the
			// container has stopped) is asked again ever more slowly.
			if time.Since(began) > logReconnectMax {
				pause = logReconnectMin
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-f.kick:
		case <-time.After(pause):
		}
		pause = min(2*pause, logReconnectMax)
	}
}

// report logs when following starts or stops failing, not at every try.
func (f *podFollower) report(err error) {
	f.mu.Lock()
	was := f.failing
	f.failing = err != nil
	f.mu.Unlock()
	switch {
	case err != nil && !was:
		f.log.Warn("cannot follow pod log; retrying", "err", err)
	case err == nil && was:
		f.log.Info("following pod log again")
	}
}

// copy copies the log of the container run since the last line copied,
// following it until the stream ends. When the container was restarted
// since, what the previous run wrote after that line comes first.
func (f *podFollower) copy(ctx context.Context, run string) error {
	f.mu.Lock()
	pos := f.pos
	f.mu.Unlock()
	if pos.Container != run && !pos.Time.IsZero() {
		if err := f.stream(ctx, true); err != nil && ctx.Err() == nil {
			f.log.Debug("no output of the previous container run", "err", err)
		}
	}
	f.mu.Lock()
	changed := f.pos.Container != run
	f.pos.Container = run
	f.mu.Unlock()
	if changed {
		f.savePos(true)
	}
	return f.stream(ctx, false)
}

// stream copies one log stream: the running container's, followed, or
// the previous run's to its end.
func (f *podFollower) stream(ctx context.Context, previous bool) error {
	f.mu.Lock()
	start := f.pos
	f.mu.Unlock()
	opts := &corev1.PodLogOptions{Container: ContainerName, Timestamps: true, Follow: !previous, Previous: previous}
	if !start.Time.IsZero() {
		// Whole seconds: the lines of that second copied before come
		// again and are skipped.
		opts.SinceTime = &metav1.Time{Time: start.Time}
	}
	body, err := f.p.r.opts.Client.CoreV1().Pods(f.p.r.opts.Namespace).GetLogs(f.pod, opts).Stream(ctx)
	if err != nil {
		return fmt.Errorf("open log stream: %w", err)
	}
	defer body.Close()
	if !previous {
		f.report(nil)
	}
	out, err := os.OpenFile(f.raw, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open raw log: %w", err)
	}
	defer out.Close()

	in := bufio.NewReaderSize(body, 64<<10)
	d := dedup{start: start, pos: start}
	var batch bytes.Buffer
	for {
		line, rerr := readLogLine(in)
		// An unterminated last line is kept only when the stream ended
		// cleanly; after a break it comes again, whole.
		if len(line) > 0 && (line[len(line)-1] == '\n' || errors.Is(rerr, io.EOF)) {
			if text, ok := d.next(line); ok {
				batch.WriteString(text)
			}
		}
		if batch.Len() > 0 && (rerr != nil || in.Buffered() == 0 || batch.Len() >= 64<<10) {
			// The raw file gets the lines before the position counts them.
			if _, err := out.Write(batch.Bytes()); err != nil {
				return fmt.Errorf("write raw log: %w", err)
			}
			batch.Reset()
			f.mu.Lock()
			f.pos.Time, f.pos.Count = d.pos.Time, d.pos.Count
			f.mu.Unlock()
			f.savePos(false)
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				return nil
			}
			return fmt.Errorf("read log stream: %w", rerr)
		}
	}
}

// dedup drops the lines of a resumed stream that were copied before,
// and tracks the position of what it lets through.
type dedup struct {
	// start is where the stream resumes; skipped counts the lines at
	// exactly start.Time dropped so far.
	start   logPos
	skipped int
	// past: a line later than start went through, so nothing more is old.
	past bool
	pos  logPos
}

// next takes one line as the API sends it with timestamps ("<RFC 3339
// time> <text>\n") and returns the text to copy, newline-terminated,
// or false for a line copied before.
func (d *dedup) next(line []byte) (string, bool) {
	stamp, text, ok := bytes.Cut(line, []byte{' '})
	ts, err := time.Parse(time.RFC3339Nano, string(stamp))
	if !ok || err != nil {
		// Not what the API sends with timestamps; keep the line whole.
		return terminated(line), true
	}
	if !d.past && !d.start.Time.IsZero() {
		switch {
		case ts.Before(d.start.Time):
			return "", false
		case ts.Equal(d.start.Time) && d.skipped < d.start.Count:
			d.skipped++
			return "", false
		}
	}
	d.past = true
	if ts.Equal(d.pos.Time) {
		d.pos.Count++
	} else {
		d.pos.Time, d.pos.Count = ts, 1
	}
	return terminated(text), true
}

func terminated(b []byte) string {
	if len(b) > 0 && b[len(b)-1] == '\n' {
		return string(b)
	}
	return string(b) + "\n"
}

// readLogLine reads up to and including the next newline, keeping at
// most maxLogLine bytes of a longer line (and its newline).
func readLogLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := r.ReadSlice('\n')
		line = append(line, chunk[:min(len(chunk), max(0, maxLogLine-len(line)))]...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if n := len(chunk); n > 0 && chunk[n-1] == '\n' && line[len(line)-1] != '\n' {
			line = append(line, '\n') // the end of a line cut short
		}
		return line, err
	}
}

// savePos records how far the copy got: at once when forced, else at
// most every logPosEvery, and logPosEvery after a skipped save at the
// latest.
func (f *podFollower) savePos(force bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.savePosLocked(force)
}

// savePosLocked is savePos with f.mu held. The file is written under the
// lock, so that once stopped no save that began earlier can still land.
func (f *podFollower) savePosLocked(force bool) {
	if f.stopped {
		return
	}
	if wait := logPosEvery - time.Since(f.saved); !force && wait > 0 {
		if f.saveTimer == nil {
			f.saveTimer = time.AfterFunc(wait, func() { f.savePos(true) })
		}
		return
	}
	if f.saveTimer != nil {
		f.saveTimer.Stop()
		f.saveTimer = nil
	}
	f.saved = time.Now()
	b, err := json.Marshal(f.pos)
	if err == nil {
		err = writeFileAtomic(f.posPath, b)
	}
	if err != nil {
		f.log.Warn("could not record how far a pod's log was copied", "err", err)
	}
}

// stop records the position a last time; a save pending on its timer
// then does nothing, so it cannot recreate the file of a pod that went.
func (f *podFollower) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.savePosLocked(true)
	f.stopped = true
}

// readPos reads how far an earlier follower got, or the zero position
// to copy the log from its start.
func readPos(path string, log *slog.Logger) logPos {
	var pos logPos
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return pos
	}
	if err == nil {
		err = json.Unmarshal(b, &pos)
	}
	if err != nil {
		log.Warn("unreadable position of a pod's log; copying it from its start, so lines may appear twice", "path", path, "err", err)
		return logPos{}
	}
	return pos
}

// writeFileAtomic replaces path with data: a crash leaves the old file
// or the new one, never a torn one.
func writeFileAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".pos-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
