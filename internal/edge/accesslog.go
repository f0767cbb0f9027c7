package edge

import (
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// accessEntry is one access log line before it is formatted.
type accessEntry struct {
	time      time.Time
	host      string
	method    string
	path      string
	status    int
	bytes     int64
	duration  time.Duration
	upstream  string
	requestID string
	app       string
}

// accessLog writes access log lines as JSON, one per line. A request
// formats its line into a shared buffer under a lock; a goroutine of its
// own hands the buffer to the writer when it fills and every
// accessLogFlush, like nginx's access_log buffer=… flush=…: one write
// for many requests, and no goroutine to wake per request. When the
// writer falls behind and accessLogMaxPending bytes wait, lines are
// dropped and counted rather than slowing requests down.
type accessLog struct {
	mu sync.Mutex
	// pending holds the lines not yet handed to the writer.
	pending []byte
	w       io.Writer
	dropped atomic.Int64
	onDrop  func()
	// full wakes the writer before its tick once pending passed
	// accessLogFlushSize.
	full chan struct{}
	// stop asks the writer to write what is pending and end; add keeps
	// working after it (a late request only fills the buffer).
	stop chan struct{}
	done chan struct{}
	once sync.Once
	err  error
	// clock formats the lines' times; mu guards it.
	clock logClock
}

// accessLogFlushSize is how much the buffer holds before the writer is
// woken early.
const accessLogFlushSize = 64 << 10

// accessLogBuffer is the size each of the two buffers starts with: the
// flush size and room for the lines added while the writer wakes.
const accessLogBuffer = accessLogFlushSize + 4<<10

// accessLogMaxPending bounds what waits for a writer that fell behind:
// some eight thousand lines.
const accessLogMaxPending = 2 << 20

// accessLogFlush is the longest a line waits in the buffer.
const accessLogFlush = 250 * time.Millisecond

func newAccessLog(w io.Writer, onDrop func()) *accessLog {
	l := &accessLog{
		pending: make([]byte, 0, accessLogBuffer),
		w:       w,
		onDrop:  onDrop,
		full:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go l.run()
	return l
}

func (l *accessLog) add(e accessEntry) {
	l.mu.Lock()
	if len(l.pending) >= accessLogMaxPending {
		l.mu.Unlock()
		l.dropped.Add(1)
		l.onDrop()
		return
	}
	l.pending = appendAccessEntry(l.pending, &e, &l.clock)
	full := len(l.pending) >= accessLogFlushSize
	l.mu.Unlock()
	if full {
		select {
		case l.full <- struct{}{}:
		default:
		}
	}
}

// run hands the pending lines to the writer when the buffer fills and
// every accessLogFlush, until stopped; then it writes what is left.
func (l *accessLog) run() {
	defer close(l.done)
	tick := time.NewTicker(accessLogFlush)
	defer tick.Stop()
	// spare is the buffer requests fill while the other one is written.
	spare := make([]byte, 0, accessLogBuffer)
	for {
		select {
		case <-l.full:
		case <-tick.C:
		case <-l.stop:
			l.mu.Lock()
			b := l.pending
			l.pending = spare
			l.mu.Unlock()
			l.write(b)
			return
		}
		l.mu.Lock()
		b := l.pending
		l.pending = spare
		l.mu.Unlock()
		l.write(b)
		spare = b[:0]
		if cap(spare) > 4*accessLogFlushSize {
			// A burst grew it: do not keep megabytes for good.
			spare = make([]byte, 0, accessLogBuffer)
		}
	}
}

func (l *accessLog) write(b []byte) {
	if len(b) == 0 {
		return
	}
	if _, err := l.w.Write(b); err != nil && l.err == nil {
		l.err = err
	}
}

// close writes what is pending and stops the writer. It returns the first
// write error, if any.
func (l *accessLog) close() error {
	l.once.Do(func() { close(l.stop) })
	<-l.done
	return l.err
}

// appendAccessEntry appends e as one JSON line, its time formatted by c.
func appendAccessEntry(b []byte, e *accessEntry, c *logClock) []byte {
	b = append(b, `{"time":"`...)
	b = c.appendTime(b, e.time)
	b = append(b, `","host":`...)
	b = appendJSONString(b, e.host)
	b = append(b, `,"method":`...)
	b = appendJSONString(b, e.method)
	b = append(b, `,"path":`...)
	b = appendJSONString(b, e.path)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(e.status), 10)
	b = append(b, `,"bytes":`...)
	b = strconv.AppendInt(b, e.bytes, 10)
	b = append(b, `,"duration":`...)
	b = appendSeconds(b, e.duration)
	b = append(b, `,"upstream":`...)
	b = appendJSONString(b, e.upstream)
	// An id is a token of [A-Za-z0-9-_.] (validRequestID), as is.
	b = append(b, `,"request_id":"`...)
	b = append(b, e.requestID...)
	b = append(b, '"')
	b = append(b, `,"app":`...)
	b = appendJSONString(b, e.app)
	return append(b, "}\n"...)
}

// logClock formats the access log's times, time.RFC3339Nano in UTC. The
// date and the clock change once a second, so it formats them once a
// second; each line adds only its fraction.
type logClock struct {
	sec  int64
	text []byte // sec as "2006-01-02T15:04:05"
}

func (c *logClock) appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	if sec := t.Unix(); sec != c.sec || len(c.text) == 0 {
		if y := t.Year(); y < 0 || y > 9999 {
			return t.AppendFormat(b, time.RFC3339Nano)
		}
		c.sec = sec
		c.text = appendDateTime(c.text[:0], t)
	}
	b = append(b, c.text...)
	return appendFraction(b, t.Nanosecond())
}

// appendDateTime appends t's date and clock, "2006-01-02T15:04:05", for
// a year of four digits.
func appendDateTime(b []byte, t time.Time) []byte {
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	b = appendDigits(b, y, 4)
	b = append(b, '-')
	b = appendDigits(b, int(mo), 2)
	b = append(b, '-')
	b = appendDigits(b, d, 2)
	b = append(b, 'T')
	b = appendDigits(b, h, 2)
	b = append(b, ':')
	b = appendDigits(b, mi, 2)
	b = append(b, ':')
	return appendDigits(b, s, 2)
}

// appendFraction appends the end of an RFC3339Nano time in UTC: the
// nanoseconds without their trailing zeros, if any, and "Z".
func appendFraction(b []byte, ns int) []byte {
	if ns != 0 {
		n := 9
		for ns%10 == 0 {
			ns /= 10
			n--
		}
		b = append(b, '.')
		b = appendDigits(b, ns, n)
	}
	return append(b, 'Z')
}

// appendSeconds appends d in seconds with six decimals, as strconv's 'f'
// format with precision 6 does but from integers; a half microsecond
// rounds up.
func appendSeconds(b []byte, d time.Duration) []byte {
	if d < 0 {
		b = append(b, '-')
		d = -d
	}
	us := (int64(d) + 500) / 1000
	b = strconv.AppendInt(b, us/1e6, 10)
	b = append(b, '.')
	return appendDigits(b, int(us%1e6), 6)
}

// appendDigits appends v, which is not negative, as n decimal digits.
func appendDigits(b []byte, v, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		b = append(b, 0)
	}
	for i := len(b) - 1; i >= len(b)-n; i-- {
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return b
}

// jsonPlain marks the bytes a JSON string holds as they are.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != 0x7f
	}
	return t
}()

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes
// U+FFFD, so every line is valid JSON whatever a client sent. Runs of
// plain ASCII, which is nearly all a log holds, are copied whole.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && jsonPlain[s[j]] {
			j++
		}
		b = append(b, s[i:j]...)
		if i = j; i == len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			if c == '"' || c == '\\' {
				b = append(b, '\\', c)
			} else {
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
