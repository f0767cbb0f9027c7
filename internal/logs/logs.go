// Package logs gathers what every instance writes into one time-stamped log
// per app and reads it back for `skiff logs APP [-f] [--since] [--tail]`.
//
// Instances write stdout and stderr straight to a raw file of their own, so
// they keep writing while the skiff server is down. A Collector polls those
// raw files, stamps each line with the moment it read it, and appends it to
// <Dir>/<app>/current.jsonl (one JSON Line per line), rotating that file
// into <Dir>/<app>/<unix-nanos>.jsonl segments. How far each raw file has
// been read is persisted in <Dir>/offsets.json, always after the lines it
// covers are on disk: after a crash lines may be collected twice, never
// lost.
//
// Raw files that grow past Options.MaxRawBytes are truncated in place once
// fully read ("copytruncate"), because the instance keeps its file open and
// cannot be told to reopen it. Bytes the instance writes between the last
// read and the truncation are lost: that window is inherent to copytruncate,
// and the collector keeps it to two back-to-back system calls. Writers must
// open raw files with O_APPEND so their next write lands at the new end of
// the file; a writer that does not leaves a hole of NUL bytes, which the
// collector skips.
package logs

import (
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// Line is one line an instance wrote, as the collector recorded it.
type Line struct {
	// Time is when the collector read the line. Lines written while the
	// collector was not running carry the moment it first read them.
	Time     time.Time `json:"time"`
	App      string    `json:"app"`
	Release  int       `json:"release"`
	Instance string    `json:"instance"`
	// Text is one line without its trailing newline (or "\r\n"). Lines
	// longer than 16 KiB are split into several Lines.
	Text string `json:"text"`
}

// Options configure a Collector.
type Options struct {
	// Dir is where app logs and offsets live. Required; created if missing.
	Dir string
	// PollInterval is how often raw files are read. Default 200ms.
	PollInterval time.Duration
	// MaxAppBytes is the size past which an app's current log is rotated
	// into a segment; the 3 newest segments are kept. Default 16 MiB.
	MaxAppBytes int64
	// MaxRawBytes is the size past which a raw file, once fully read, is
	// truncated in place (copytruncate). Default 32 MiB.
	MaxRawBytes int64
	// Logger receives the collector's own messages. Default slog.Default().
	Logger *slog.Logger
}

const (
	defaultPollInterval = 200 * time.Millisecond
	defaultMaxAppBytes  = 16 << 20
	defaultMaxRawBytes  = 32 << 20

	// maxLineBytes is where long lines are split, so one runaway line
	// cannot hold unbounded memory or make one giant JSON record.
	maxLineBytes = 16 << 10
	// partialLineWait is how long an unterminated last line waits for its
	// newline before it is recorded as it is (a prompt, a progress bar).
	partialLineWait = time.Second
	// keepSegments is how many rotated segments an app keeps.
	keepSegments = 3
	// persistEvery bounds how often offsets are written (each write costs
	// two fsyncs); it is also about how much a crash makes us re-read.
	persistEvery = time.Second
)

var (
	// ErrBadApp means an app name cannot name a log directory.
	ErrBadApp = errors.New("invalid app name")
	// ErrBadQuery means a Query has a value out of range.
	ErrBadQuery = errors.New("invalid log query")
	// ErrBadOptions means Options cannot make a Collector.
	ErrBadOptions = errors.New("invalid log collector options")
)

// withDefaults fills in the zero fields and rejects values that make no sense.
func (o Options) withDefaults() (Options, error) {
	if o.Dir == "" {
		return o, fmt.Errorf("%w: Dir is empty: set it to the directory for collected logs", ErrBadOptions)
	}
	if o.PollInterval < 0 || o.MaxAppBytes < 0 || o.MaxRawBytes < 0 {
		return o, fmt.Errorf("%w: PollInterval, MaxAppBytes and MaxRawBytes must not be negative (0 means the default)", ErrBadOptions)
	}
	if o.PollInterval == 0 {
		o.PollInterval = defaultPollInterval
	}
	if o.MaxAppBytes == 0 {
		o.MaxAppBytes = defaultMaxAppBytes
	}
	if o.MaxRawBytes == 0 {
		o.MaxRawBytes = defaultMaxRawBytes
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o, nil
}

// checkApp makes sure an app name is safe as a single path element. The
// spec package enforces DNS labels; this only guards the file system.
func checkApp(app string) error {
	if app == "" || len(app) > 253 || app[0] == '.' {
		return fmt.Errorf("%w: %q: use letters, digits, '-', '_' or '.', not starting with '.'", ErrBadApp, app)
	}
	for _, r := range app {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return fmt.Errorf("%w: %q: use letters, digits, '-', '_' or '.', not starting with '.'", ErrBadApp, app)
		}
	}
	return nil
}
