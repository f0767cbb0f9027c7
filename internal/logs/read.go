package logs

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// Query selects lines of one app's log.
type Query struct {
	// Since keeps lines collected at or after it; zero keeps all that is kept.
	Since time.Time
	// Tail, when > 0, keeps only the last Tail matching lines (before
	// following).
	Tail int
	// Follow keeps streaming new lines until ctx ends.
	Follow bool
	// Release keeps one release's lines; 0 keeps all.
	Release int
	// Instance keeps one instance's lines; "" keeps all.
	Instance string
}

func (q Query) check() error {
	if q.Tail < 0 {
		return fmt.Errorf("%w: tail %d: use a positive number of lines, or 0 for all", ErrBadQuery, q.Tail)
	}
	if q.Release < 0 {
		return fmt.Errorf("%w: release %d: use a release number, or 0 for all", ErrBadQuery, q.Release)
	}
	return nil
}

func (q Query) match(l Line) bool {
	return (q.Since.IsZero() || !l.Time.Before(q.Since)) &&
		(q.Release == 0 || l.Release == q.Release) &&
		(q.Instance == "" || l.Instance == q.Instance)
}

// Read calls fn for each line of app matching q, oldest first. With
// q.Follow it then waits for new lines (woken by the collector, not by
// polling) until ctx ends, and returns nil then. It returns fn's error as
// is, and ctx's error if ctx ends before the kept lines were all passed
// on. An app without logs has no lines; that is no error.
func (c *Collector) Read(ctx context.Context, app string, q Query, fn func(Line) error) error {
	if err := checkApp(app); err != nil {
		return err
	}
	if err := q.check(); err != nil {
		return err
	}
	a := c.app(app)
	emit := func(l Line) error {
		if !q.match(l) {
			return nil
		}
		return fn(l)
	}
	// Take the notify channel before the first read, so a line appended
	// after that read still wakes the follow loop.
	notify, _ := a.watch()
	s, err := openSnapshot(a, q)
	if err != nil {
		return err
	}
	defer s.close()
	if q.Tail > 0 {
		err = s.tail(ctx, q, fn)
	} else {
		err = s.drainAll(ctx, emit)
	}
	if err != nil || !q.Follow {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-notify:
		}
		var deleted bool
		notify, deleted = a.watch()
		if deleted {
			return nil // the app is gone; so is its log
		}
		if err := s.catchUp(a, emit); err != nil {
			return err
		}
	}
}

// snapshot is the files of one app's log a reader works through, oldest
// first. The last one is the live file while it is current.jsonl.
type snapshot struct {
	files []*logFile
	// known is the newest segment seen, so a follower that notices a
	// rotation opens exactly the segments created since.
	known int64
	app   *appLog
}

// openSnapshot opens the app's log files under its lock, so no rotation
// happens between listing and opening them. Open files stay readable when
// later renamed or removed.
func openSnapshot(a *appLog, q Query) (*snapshot, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := &snapshot{app: a}
	segs, err := listSegments(a.dir)
	if err != nil {
		return nil, err
	}
	for _, seg := range segs {
		s.known = seg.name
		// A segment is named after its rotation, later than all its lines.
		if !q.Since.IsZero() && seg.name < q.Since.UnixNano() {
			continue
		}
		if err := s.open(seg.path); err != nil {
			s.close()
			return nil, err
		}
	}
	if err := s.open(a.currentPath()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *snapshot) open(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open app log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("open app log: %w", err)
	}
	s.files = append(s.files, &logFile{f: f, info: fi, br: bufio.NewReaderSize(f, 64<<10)})
	return nil
}

func (s *snapshot) close() {
	for _, l := range s.files {
		l.close(s.app)
	}
	s.files = nil
}

// drainAll passes every record to emit, closing each file but the live one.
func (s *snapshot) drainAll(ctx context.Context, emit func(Line) error) error {
	for len(s.files) > 0 {
		if err := s.files[0].drain(ctx, emit); err != nil {
			return err
		}
		if len(s.files) == 1 {
			return nil
		}
		s.files[0].close(s.app)
		s.files = s.files[1:]
	}
	return nil
}

// tail passes the last q.Tail matching lines to fn. It reads the newest
// file first and older ones only while lines are missing; the live file
// is read to its end either way, ready to follow.
func (s *snapshot) tail(ctx context.Context, q Query, fn func(Line) error) error {
	var parts [][]Line // newest file first
	need := q.Tail
	for i := len(s.files) - 1; i >= 0 && need > 0; i-- {
		r := newRing(need)
		err := s.files[i].drain(ctx, func(l Line) error {
			if q.match(l) {
				r.add(l)
			}
			return nil
		})
		if err != nil {
			return err
		}
		got := r.lines()
		parts = append(parts, got)
		need -= len(got)
	}
	if n := len(s.files); n > 1 {
		for _, l := range s.files[:n-1] {
			l.close(s.app)
		}
		s.files = s.files[n-1:]
	}
	for i := len(parts) - 1; i >= 0; i-- {
		for _, l := range parts[i] {
			if err := fn(l); err != nil {
				return err
			}
		}
	}
	return nil
}

// catchUp follows the log after a change: it reads what the live file
// gained and, when current.jsonl was rotated away under it, finishes the
// old file and moves on to the segments and current file written since.
func (s *snapshot) catchUp(a *appLog, emit func(Line) error) error {
	for {
		if err := s.drainAll(context.Background(), emit); err != nil {
			return err
		}
		more, err := s.openNewer(a)
		if err != nil || !more {
			return err
		}
		// Loop: the old live file may have gained lines just before it was
		// rotated; drainAll reads them before moving on.
	}
}

// openNewer opens the files created since the live file stopped being
// current.jsonl, and reports whether there were any.
func (s *snapshot) openNewer(a *appLog) (bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cur, err := os.Stat(a.currentPath())
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("follow app log: %w", err)
	}
	var live *logFile
	if n := len(s.files); n > 0 {
		live = s.files[n-1]
		if os.SameFile(live.info, cur) {
			return false, nil
		}
	}
	segs, err := listSegments(a.dir)
	if err != nil {
		return false, err
	}
	for _, seg := range segs {
		if seg.name <= s.known {
			continue
		}
		s.known = seg.name
		fi, err := os.Stat(seg.path)
		if err != nil {
			return false, fmt.Errorf("follow app log: %w", err)
		}
		if live != nil && os.SameFile(live.info, fi) {
			continue // the live file itself, renamed by the rotation
		}
		if err := s.open(seg.path); err != nil {
			return false, err
		}
	}
	if err := s.open(a.currentPath()); err != nil {
		return false, err
	}
	return true, nil
}

// logFile reads records from one app log file. It can go on reading as
// the file grows: a record not yet ended by its newline waits in carry.
type logFile struct {
	f         *os.File
	info      fs.FileInfo
	br        *bufio.Reader
	carry     []byte
	malformed int
}

// next returns the next complete record; ok is false at the end of what
// is written so far.
func (l *logFile) next() (Line, bool, error) {
	for {
		b, err := l.br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			l.carry = append(l.carry, b...)
			return Line{}, false, nil
		}
		if err != nil {
			return Line{}, false, fmt.Errorf("read app log: %w", err)
		}
		if len(l.carry) > 0 {
			b = append(l.carry, b...)
			l.carry = nil
		}
		var line Line
		if err := json.Unmarshal(b, &line); err != nil {
			// A record torn by a crash; the rest of the log is still good.
			l.malformed++
			continue
		}
		return line, true, nil
	}
}

// drain passes each complete record to emit until the end of the file.
func (l *logFile) drain(ctx context.Context, emit func(Line) error) error {
	for i := 1; ; i++ {
		line, ok, err := l.next()
		if err != nil || !ok {
			return err
		}
		if err := emit(line); err != nil {
			return err
		}
		if i%1024 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
}

func (l *logFile) close(a *appLog) {
	if l.malformed > 0 {
		a.logger.Warn("skipped malformed records in app log", "file", l.f.Name(), "records", l.malformed)
	}
	l.f.Close()
}

// ring keeps the last n lines added.
type ring struct {
	buf   []Line
	next  int
	count int
}

func newRing(n int) *ring { return &ring{buf: make([]Line, 0, min(n, 1024)), count: n} }

func (r *ring) add(l Line) {
	if len(r.buf) < r.count {
		r.buf = append(r.buf, l)
		return
	}
	r.buf[r.next] = l
	r.next = (r.next + 1) % r.count
}

// lines returns the kept lines, oldest first.
func (r *ring) lines() []Line {
	return append(r.buf[r.next:len(r.buf):len(r.buf)], r.buf[:r.next]...)
}
