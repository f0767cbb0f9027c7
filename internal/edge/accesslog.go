package edge

import (
	"bufio"
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

// accessLog writes access log lines as JSON, one per line, on its own
// goroutine through a buffer. A request only hands its entry to a
// channel; when the writer falls behind, entries are dropped and counted
// rather than slowing requests down.
type accessLog struct {
	ch      chan accessEntry
	w       *bufio.Writer
	dropped atomic.Int64
	onDrop  func()
	// stop asks the writer to write what is queued and end; the channel
	// itself is never closed, so a late request cannot panic on it.
	stop chan struct{}
	done chan struct{}
	once sync.Once
	err  error
}

// accessLogQueue is how many entries may wait for the writer.
const accessLogQueue = 8192

// accessLogFlush is the longest a written line waits in the buffer.
const accessLogFlush = 250 * time.Millisecond

func newAccessLog(w io.Writer, onDrop func()) *accessLog {
	l := &accessLog{
		ch:     make(chan accessEntry, accessLogQueue),
		w:      bufio.NewWriterSize(w, 64<<10),
		onDrop: onDrop,
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	go l.run()
	return l
}

func (l *accessLog) add(e accessEntry) {
	select {
	case l.ch <- e:
	default:
		l.dropped.Add(1)
		l.onDrop()
	}
}

// run writes entries until stopped. The buffer reaches the file when it
// fills and every accessLogFlush, like nginx's access_log buffer=…
// flush=…: one write for many requests instead of one each, so a line
// shows up at most accessLogFlush late.
func (l *accessLog) run() {
	defer close(l.done)
	tick := time.NewTicker(accessLogFlush)
	defer tick.Stop()
	buf := make([]byte, 0, 512)
	for {
		select {
		case e := <-l.ch:
			buf = l.write(buf, &e)
		case <-tick.C:
			l.flush()
		case <-l.stop:
			for {
				select {
				case e := <-l.ch:
					buf = l.write(buf, &e)
				default:
					l.flush()
					return
				}
			}
		}
	}
}

func (l *accessLog) write(buf []byte, e *accessEntry) []byte {
	buf = appendAccessEntry(buf[:0], e)
	if _, err := l.w.Write(buf); err != nil && l.err == nil {
		l.err = err
	}
	return buf
}

func (l *accessLog) flush() {
	if err := l.w.Flush(); err != nil && l.err == nil {
		l.err = err
	}
}

// close writes what is queued and stops the writer. It returns the first
// write error, if any.
func (l *accessLog) close() error {
	l.once.Do(func() { close(l.stop) })
	<-l.done
	return l.err
}

// appendAccessEntry appends e as one JSON line.
func appendAccessEntry(b []byte, e *accessEntry) []byte {
	b = append(b, `{"time":"`...)
	b = e.time.UTC().AppendFormat(b, time.RFC3339Nano)
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
	b = strconv.AppendFloat(b, e.duration.Seconds(), 'f', 6, 64)
	b = append(b, `,"upstream":`...)
	b = appendJSONString(b, e.upstream)
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, e.requestID)
	b = append(b, `,"app":`...)
	b = appendJSONString(b, e.app)
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string; invalid UTF-8 becomes
// U+FFFD, so every line is valid JSON whatever a client sent.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
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
