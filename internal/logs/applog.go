package logs

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	currentName   = "current.jsonl"
	segmentSuffix = ".jsonl"
)

// errAppDeleted tells the collector that the appLog it holds was deleted
// under it, so it must fetch a fresh one.
var errAppDeleted = errors.New("app log deleted")

// appLog is one app's collected log: the current file that lines are
// appended to and the rotated segments beside it. Its mutex orders writes,
// rotation and deletion against readers taking a snapshot of the files.
type appLog struct {
	app      string
	dir      string
	maxBytes int64
	logger   *slog.Logger

	mu   sync.Mutex
	f    *os.File // current.jsonl, opened on the first append
	size int64
	// dirty: written since the last fsync.
	dirty bool
	// torn: a failed write stopped mid-line, so the next write starts with
	// a newline instead of gluing a good line onto the torn one.
	torn bool
	// lastTime keeps line times from going backwards when the wall clock
	// steps back, so the log stays in time order.
	lastTime time.Time
	// lastSeg is the name (unix nanos) of the newest segment; names only grow.
	lastSeg int64
	// notify is closed and replaced after every change, to wake followers
	// without polling.
	notify  chan struct{}
	deleted bool
}

func newAppLog(dir, app string, maxBytes int64, logger *slog.Logger) *appLog {
	return &appLog{
		app:      app,
		dir:      filepath.Join(dir, app),
		maxBytes: maxBytes,
		logger:   logger.With("app", app),
		notify:   make(chan struct{}),
	}
}

func (a *appLog) currentPath() string { return filepath.Join(a.dir, currentName) }

// append writes lines to the current file, in one write so readers rarely
// see half a record, then rotates if the file grew past its limit.
func (a *appLog) append(lines []Line) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.deleted {
		return errAppDeleted
	}
	if err := a.open(); err != nil {
		return err
	}
	var buf bytes.Buffer
	if a.torn {
		buf.WriteByte('\n')
	}
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	for i := range lines {
		if lines[i].Time.Before(a.lastTime) {
			lines[i].Time = a.lastTime
		}
		a.lastTime = lines[i].Time
		if err := enc.Encode(lines[i]); err != nil {
			return fmt.Errorf("encode log line: %w", err)
		}
	}
	n, err := a.f.Write(buf.Bytes())
	a.size += int64(n)
	if n > 0 {
		a.dirty = true
		a.wake()
	}
	if err != nil {
		a.torn = a.torn || n > 0
		return fmt.Errorf("append to %s: %w", a.currentPath(), err)
	}
	a.torn = false
	if a.size >= a.maxBytes {
		// The lines are safely written; a failed rotation only means the
		// file grows until the next attempt, so it is not the caller's error.
		if err := a.rotate(); err != nil {
			a.logger.Error("rotate app log", "err", err)
		}
	}
	return nil
}

// open opens current.jsonl for appending if it is not open yet.
func (a *appLog) open() error {
	if a.f != nil {
		return nil
	}
	if err := os.MkdirAll(a.dir, 0o750); err != nil {
		return fmt.Errorf("create app log dir: %w", err)
	}
	f, err := os.OpenFile(a.currentPath(), os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open app log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open app log: %w", err)
	}
	a.size = fi.Size()
	a.torn = false
	if a.size > 0 {
		// A crash mid-write leaves a record without its newline; the next
		// record must not be glued to it.
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, a.size-1); err == nil && last[0] != '\n' {
			a.torn = true
		}
	}
	segs, err := listSegments(a.dir)
	if err != nil {
		f.Close()
		return err
	}
	if len(segs) > 0 {
		a.lastSeg = max(a.lastSeg, segs[len(segs)-1].name)
	}
	// The new file's directory entry must be durable before any offset
	// that counts on its content is persisted.
	if err := syncDir(a.dir); err != nil {
		f.Close()
		return err
	}
	a.f = f
	return nil
}

// rotate turns current.jsonl into a segment named after the rotation time
// (so every line in it is older than its name) and starts a new one.
func (a *appLog) rotate() error {
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("sync app log: %w", err)
	}
	a.dirty = false
	if err := a.f.Close(); err != nil {
		return fmt.Errorf("close app log: %w", err)
	}
	a.f = nil
	name := max(time.Now().UnixNano(), a.lastTime.UnixNano(), a.lastSeg+1)
	if err := os.Rename(a.currentPath(), segmentPath(a.dir, name)); err != nil {
		return fmt.Errorf("rotate app log: %w", err)
	}
	a.lastSeg = name
	segs, err := listSegments(a.dir)
	if err != nil {
		return err
	}
	for len(segs) > keepSegments {
		if err := os.Remove(segs[0].path); err != nil {
			return fmt.Errorf("remove old app log segment: %w", err)
		}
		segs = segs[1:]
	}
	// Open the new current file now, so a follower that notices the
	// rotation finds it.
	err = a.open()
	a.wake()
	return err
}

// sync makes what was appended durable, before offsets that count on it
// are persisted.
func (a *appLog) sync() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.dirty || a.f == nil {
		return nil
	}
	if err := a.f.Sync(); err != nil {
		return fmt.Errorf("sync app log %s: %w", a.app, err)
	}
	a.dirty = false
	return nil
}

// watch returns the channel closed at the next change, and whether the
// app's logs were deleted.
func (a *appLog) watch() (<-chan struct{}, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.notify, a.deleted
}

// wake tells followers something changed. Called with a.mu held.
func (a *appLog) wake() {
	close(a.notify)
	a.notify = make(chan struct{})
}

// remove deletes the app's logs and ends its followers.
func (a *appLog) remove() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.f != nil {
		a.f.Close()
		a.f = nil
	}
	a.deleted = true
	a.wake()
	if err := os.RemoveAll(a.dir); err != nil {
		return fmt.Errorf("delete logs of %s: %w", a.app, err)
	}
	return nil
}

// segment is a rotated app log file.
type segment struct {
	name int64 // unix nanos at rotation: newer than every line inside
	path string
}

func segmentPath(dir string, name int64) string {
	return filepath.Join(dir, strconv.FormatInt(name, 10)+segmentSuffix)
}

// listSegments returns dir's segments, oldest first. A missing dir has none.
func listSegments(dir string) ([]segment, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list app log segments: %w", err)
	}
	var segs []segment
	for _, e := range ents {
		base, ok := strings.CutSuffix(e.Name(), segmentSuffix)
		if !ok || !e.Type().IsRegular() {
			continue
		}
		n, err := strconv.ParseInt(base, 10, 64)
		if err != nil {
			continue // current.jsonl or something not ours
		}
		segs = append(segs, segment{name: n, path: filepath.Join(dir, e.Name())})
	}
	slices.SortFunc(segs, func(x, y segment) int { return cmp.Compare(x.name, y.name) })
	return segs, nil
}
