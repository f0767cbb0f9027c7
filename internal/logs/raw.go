package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
	"unicode/utf8"
)

// readChunk is how much of a raw file is read and written to the app log
// at a time, so a large backlog never sits in memory whole.
const readChunk = 256 << 10

// rawFile is one instance's raw log file being collected.
type rawFile struct {
	id      string
	app     string
	release int
	path    string
	// off is how far the file has been read. pending holds the bytes read
	// after the last recorded line, so off-len(pending) is how far the app
	// log holds the file: the offset that is persisted.
	off          int64
	pending      []byte
	pendingSince time.Time
	ino          uint64
	// leaving: Untrack was asked for but the final read failed; polls
	// retry it and forget the file once it succeeds.
	leaving bool
	// failing: the last read failed; only changes are logged, not every poll.
	failing bool
}

func (r *rawFile) committed() int64 { return r.off - int64(len(r.pending)) }

func (r *rawFile) entry() offsetEntry {
	return offsetEntry{App: r.app, Release: r.release, Path: r.path, Offset: r.committed(), Inode: r.ino}
}

// collect moves what r's file gained since the last call into the app log.
// final also records an unterminated last line, for a file nobody will
// finish. Callers hold c.mu.
func (c *Collector) collect(r *rawFile, final bool) error {
	now := time.Now()
	fi, err := os.Stat(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		// Not created yet (tracked before its instance started) or removed
		// by its owner: nothing to read either way.
		if final {
			return c.flushPending(r, now)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat raw log: %w", err)
	}
	ino := inode(fi)
	if (r.ino != 0 && ino != 0 && ino != r.ino) || fi.Size() < r.off {
		// Replaced, or truncated by someone else: what was read stands,
		// and the new content starts at 0.
		if err := c.flushPending(r, now); err != nil {
			return err
		}
		c.logger.Info("raw log truncated or replaced; collecting it from its start", "instance", r.id, "path", r.path)
		r.off = 0
		c.dirty = true
	}
	if r.ino != ino {
		r.ino = ino
		c.dirty = true
	}
	if err := c.readNew(r, fi.Size(), now); err != nil {
		return err
	}
	if len(r.pending) > 0 && (final || now.Sub(r.pendingSince) >= c.partialWait) {
		if err := c.flushPending(r, now); err != nil {
			return err
		}
	}
	if !final && r.off > c.opts.MaxRawBytes && len(r.pending) == 0 {
		return c.truncateRaw(r)
	}
	return nil
}

// readNew reads r's file from r.off up to size (the size seen at stat
// time, so a file written faster than it is read still ends a poll).
func (c *Collector) readNew(r *rawFile, size int64, now time.Time) error {
	if size <= r.off {
		return nil
	}
	f, err := os.Open(r.path)
	if err != nil {
		return fmt.Errorf("open raw log: %w", err)
	}
	defer f.Close()
	buf := make([]byte, min(readChunk, size-r.off))
	for r.off < size {
		n, err := f.ReadAt(buf[:min(int64(len(buf)), size-r.off)], r.off)
		if n > 0 {
			texts, rest := splitLines(r.pending, buf[:n])
			// The offset only moves once the lines are written: a failed
			// write is retried at the next poll, not lost.
			if err := c.write(r, texts, now); err != nil {
				return err
			}
			if len(texts) > 0 || len(r.pending) == 0 {
				r.pendingSince = now
			}
			r.pending = rest
			r.off += int64(n)
			c.dirty = true
		}
		if errors.Is(err, io.EOF) {
			return nil // shrank while we read; the next poll sees it
		}
		if err != nil {
			return fmt.Errorf("read raw log: %w", err)
		}
	}
	return nil
}

// flushPending records an unterminated last line as it is.
func (c *Collector) flushPending(r *rawFile, now time.Time) error {
	if len(r.pending) == 0 {
		return nil
	}
	var texts []string
	if text, ok := lineText(r.pending); ok {
		texts = append(texts, text)
	}
	if err := c.write(r, texts, now); err != nil {
		return err
	}
	r.pending = nil
	c.dirty = true
	return nil
}

// write appends texts from r to its app's log.
func (c *Collector) write(r *rawFile, texts []string, now time.Time) error {
	if len(texts) == 0 {
		return nil
	}
	lines := make([]Line, len(texts))
	t := now.UTC()
	for i, text := range texts {
		lines[i] = Line{Time: t, App: r.app, Release: r.release, Instance: r.id, Text: text}
	}
	for {
		err := c.app(r.app).append(lines)
		if errors.Is(err, errAppDeleted) {
			continue // DeleteApp ran between fetching the app and writing
		}
		return err
	}
}

// truncateRaw empties a raw file that is fully collected (copytruncate).
// Offset 0 is persisted first: a crash right after the truncation must
// not resume past the end of the new, shorter content. Then the file's
// size is checked and it is truncated back to back, so only bytes written
// between those two system calls can be lost.
func (c *Collector) truncateRaw(r *rawFile) error {
	read := r.off
	r.off = 0
	err := c.persist()
	r.off = read
	if err != nil {
		return err
	}
	// The persisted 0 is stale but safe until the next persist: at worst
	// a crash re-reads the file.
	c.dirty = true
	// A busy writer may have added to the file meanwhile: catch up and try
	// again a few times before leaving it to the next poll.
	for range 3 {
		fi, err := os.Stat(r.path)
		if err != nil || inode(fi) != r.ino || fi.Size() < r.off {
			return nil // changed under us; the next poll sorts it out
		}
		if fi.Size() == r.off {
			if err := os.Truncate(r.path, 0); err != nil {
				return fmt.Errorf("truncate raw log: %w", err)
			}
			c.logger.Debug("truncated collected raw log", "instance", r.id, "path", r.path, "bytes", read)
			r.off = 0
			return nil
		}
		if err := c.readNew(r, fi.Size(), time.Now()); err != nil {
			return err
		}
		if len(r.pending) > 0 {
			return nil
		}
	}
	return nil
}

// splitLines cuts pending+chunk into complete lines and returns the bytes
// after the last newline. Lines longer than maxLineBytes, ended or not,
// come out in pieces of at most maxLineBytes.
func splitLines(pending, chunk []byte) (texts []string, rest []byte) {
	buf := append(pending[:len(pending):len(pending)], chunk...)
	for {
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			break
		}
		line := bytes.TrimSuffix(buf[:i], []byte{'\r'})
		for len(line) > maxLineBytes {
			cut := runeCut(line, maxLineBytes)
			texts = appendText(texts, line[:cut])
			line = line[cut:]
		}
		texts = appendText(texts, line)
		buf = buf[i+1:]
	}
	for len(buf) >= maxLineBytes {
		cut := runeCut(buf, maxLineBytes)
		texts = appendText(texts, buf[:cut])
		buf = buf[cut:]
	}
	return texts, bytes.Clone(buf)
}

func appendText(texts []string, line []byte) []string {
	if text, ok := lineText(line); ok {
		return append(texts, text)
	}
	return texts
}

// lineText turns raw bytes into a line's text. Leading NUL bytes are the
// hole a writer without O_APPEND leaves after a copytruncate, not output:
// they are dropped, and a line of nothing else is no line at all.
func lineText(b []byte) (string, bool) {
	t := bytes.TrimLeft(b, "\x00")
	if len(t) == 0 && len(b) > 0 {
		return "", false
	}
	return string(t), true
}

// runeCut returns where to cut b at most n bytes in without splitting a
// UTF-8 sequence (unless b is not UTF-8 there anyway).
func runeCut(b []byte, n int) int {
	for cut := n; cut > n-utf8.UTFMax && cut > 0; cut-- {
		if utf8.RuneStart(b[cut]) {
			return cut
		}
	}
	return n
}
