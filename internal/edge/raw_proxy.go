package edge

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// The raw listener's upstream side: a small pool of idle connections
// per backend, and the reading of a response's head and body.

// rawIdleMax is how many idle connections a backend's raw pool keeps;
// more are closed when returned.
const rawIdleMax = 256

// rawUpstream is one connection to a backend.
type rawUpstream struct {
	c    net.Conn
	br   *bufio.Reader
	used time.Time // when it was last returned to the pool
	// idle bounds each wait for the backend, as idleConn does on the
	// fasthttp listener: a response that sends nothing for that long is
	// cut. The deadline moves on only once a quarter of it has passed,
	// so most requests leave it alone.
	idle  time.Duration
	armed time.Time
}

// arm makes the silence bound run from now.
func (u *rawUpstream) arm(now time.Time) error {
	if !u.armed.IsZero() && u.armed.Sub(now) > u.idle-u.idle/4 {
		return nil
	}
	u.armed = now.Add(u.idle)
	return u.c.SetReadDeadline(u.armed)
}

// rawPool is a backend's idle upstream connections for the raw
// listener. It lives in the backend (made on first use), so that it
// follows the backend across snapshots like the other listeners' pools,
// and closeIdle empties it.
type rawPool struct {
	mu   sync.Mutex
	idle []*rawUpstream
}

// rawPoolFor returns b's raw pool, making it once.
func rawPoolFor(b *backend) *rawPool {
	if p := b.raw.Load(); p != nil {
		return p
	}
	b.raw.CompareAndSwap(nil, &rawPool{})
	return b.raw.Load()
}

// get returns an idle connection younger than maxIdle, most recently
// used first, or nil.
func (p *rawPool) get(now time.Time, maxIdle time.Duration) *rawUpstream {
	p.mu.Lock()
	defer p.mu.Unlock()
	for n := len(p.idle); n > 0; n = len(p.idle) {
		u := p.idle[n-1]
		p.idle = p.idle[:n-1]
		if now.Sub(u.used) < maxIdle {
			return u
		}
		u.c.Close()
	}
	return nil
}

func (p *rawPool) put(u *rawUpstream, now time.Time) {
	u.used = now
	p.mu.Lock()
	if len(p.idle) < rawIdleMax {
		p.idle = append(p.idle, u)
		u = nil
	}
	p.mu.Unlock()
	if u != nil {
		u.c.Close()
	}
}

// closeIdle closes every idle connection.
func (p *rawPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, u := range idle {
		u.c.Close()
	}
}

// dial opens a new connection to b.
func (s *FastServer) rawDial(b *backend) (*rawUpstream, error) {
	o := s.e.opts
	d := net.Dialer{Timeout: o.DialTimeout, KeepAlive: 30 * time.Second}
	c, err := d.Dial("tcp", b.addr)
	if err != nil {
		return nil, err
	}
	return &rawUpstream{c: c, br: bufio.NewReaderSize(c, fastReadBuffer), idle: o.ResponseHeaderTimeout}, nil
}

// errBadResponse marks a response the edge cannot forward.
var errBadResponse = errors.New("malformed response from the backend")

// rawResponse is a parsed response head; its slices point into the
// upstream connection's read buffer until the head is discarded.
type rawResponse struct {
	head   []byte
	status int
	reason []byte
	fields []rawField
	drop   uint64
	// length is the body's Content-Length, -1 for none.
	length  int64
	chunked bool
	// close says the backend ends the connection after this response.
	close      bool
	connection [][]byte
}

func (r *rawResponse) name(f rawField) []byte  { return r.head[f.name[0]:f.name[1]] }
func (r *rawResponse) value(f rawField) []byte { return r.head[f.value[0]:f.value[1]] }

func (r *rawResponse) connectionNames(k []byte) bool { return namedIn(r.connection, k) }

// readHead waits for a complete head in br and returns its length.
// got says whether any byte of it arrived.
func readHead(br *bufio.Reader) (n int, got bool, err error) {
	for {
		b, _ := br.Peek(br.Buffered())
		if n := headEnd(b); n >= 0 {
			return n, true, nil
		}
		if br.Buffered() == br.Size() {
			return 0, true, fmt.Errorf("response head over %d bytes: %w", br.Size(), errBadResponse)
		}
		if _, err := br.Peek(br.Buffered() + 1); err != nil {
			return 0, br.Buffered() > 0, err
		}
	}
}

// parseResponse parses the response head h into r.
func parseResponse(h []byte, r *rawResponse) error {
	fields, conn := r.fields[:0], r.connection[:0]
	*r = rawResponse{head: h, fields: fields, connection: conn, length: -1}
	eol := bytes.IndexByte(h, '\n')
	if eol < 13 || h[eol-1] != '\r' {
		return fmt.Errorf("status line: %w", errBadResponse)
	}
	line := h[:eol-1]
	http10 := string(line[:9]) == "HTTP/1.0 "
	if !http10 && string(line[:9]) != "HTTP/1.1 " {
		return fmt.Errorf("status line %.40q: %w", line, errBadResponse)
	}
	st, err := strconv.Atoi(string(line[9:12]))
	if err != nil || st < 100 || st > 999 || len(line) > 12 && line[12] != ' ' {
		return fmt.Errorf("status line %.40q: %w", line, errBadResponse)
	}
	r.status = st
	if len(line) > 13 {
		r.reason = line[13:]
	}
	r.close = http10
	lengths := 0
	pos := eol + 1
	for {
		eol = bytes.IndexByte(h[pos:], '\n')
		if eol < 1 || h[pos+eol-1] != '\r' {
			return fmt.Errorf("header line: %w", errBadResponse)
		}
		end := pos + eol - 1
		if end == pos {
			break
		}
		f, err := parseField(h, pos, end)
		if err != nil {
			return fmt.Errorf("header field %.40q: %w", h[pos:end], errBadResponse)
		}
		r.fields = append(r.fields, f)
		name, value := r.name(f), r.value(f)
		r.drop |= responseDropped.bits(name)
		switch len(name) {
		case 10:
			if bytes.EqualFold(name, []byte("Connection")) {
				r.connection = append(r.connection, value)
				if hasToken(value, "close") {
					r.close = true
				} else if http10 && hasToken(value, "keep-alive") {
					r.close = false
				}
			}
		case 14:
			if bytes.EqualFold(name, []byte("Content-Length")) {
				// Digits only: ParseInt would take a sign, which the
				// client, reading the field as forwarded, may not.
				n, err := strconv.ParseInt(string(value), 10, 64)
				if err != nil || !allDigits(value, isDigit) || lengths > 0 && n != r.length {
					return fmt.Errorf("Content-Length %.40q: %w", value, errBadResponse)
				}
				lengths++
				r.length = n
			}
		case 17:
			if bytes.EqualFold(name, []byte("Transfer-Encoding")) {
				if !bytes.EqualFold(value, []byte("chunked")) || r.chunked {
					return fmt.Errorf("Transfer-Encoding %.40q: %w", value, errBadResponse)
				}
				r.chunked = true
			}
		}
		pos = end + 2
	}
	if r.chunked && lengths > 0 {
		return fmt.Errorf("both Content-Length and chunked: %w", errBadResponse)
	}
	return nil
}

// appendResponseHead appends the head the client gets for r: status
// line, r's fields minus the hop-by-hop ones and those Connection names
// (Trailer stays, naming only the fields a trailer may carry),
// X-Request-Id, the sticky cookie and Connection: close when closing.
func appendResponseHead(out []byte, r *rawResponse, id, setCookie string, closing bool) []byte {
	out = append(out, "HTTP/1.1 "...)
	out = strconv.AppendInt(out, int64(r.status), 10)
	out = append(out, ' ')
	out = append(out, r.reason...)
	out = append(out, "\r\n"...)
	for _, f := range r.fields {
		name, value := r.name(f), r.value(f)
		if r.drop != 0 {
			if bits := responseDropped.bits(name); bits != 0 {
				if bytes.EqualFold(name, []byte("Trailer")) {
					out = appendTrailerField(out, name, value)
				}
				continue
			}
			if r.drop&1 != 0 && r.connectionNames(name) {
				continue
			}
		}
		out = append(out, name...)
		out = append(out, ": "...)
		out = append(out, value...)
		out = append(out, "\r\n"...)
	}
	out = append(out, requestIDHeader+": "...)
	out = append(out, id...)
	out = append(out, "\r\n"...)
	if setCookie != "" {
		out = append(out, "Set-Cookie: "...)
		out = append(out, setCookie...)
		out = append(out, "\r\n"...)
	}
	if closing {
		out = append(out, "Connection: close\r\n"...)
	}
	return append(out, "\r\n"...)
}

// appendTrailerField appends a Trailer field announcing the names of
// value a trailer may carry, or nothing if none.
func appendTrailerField(out []byte, name, value []byte) []byte {
	start, first := len(out), true
	for n := range bytes.SplitSeq(value, []byte{','}) {
		n = bytes.TrimSpace(n)
		if len(n) == 0 || responseDropped.bits(n) != 0 {
			continue
		}
		if first {
			out = append(out, name...)
			out = append(out, ": "...)
			first = false
		} else {
			out = append(out, ", "...)
		}
		out = append(out, n...)
	}
	if len(out) > start {
		out = append(out, "\r\n"...)
	}
	return out
}

// allDigits reports whether b is not empty and every byte of it is a
// digit by is: the client reads the field as it is forwarded, so the
// edge must not read more into it (a sign, say) than the client would.
func allDigits(b []byte, is func(byte) bool) bool {
	for _, c := range b {
		if !is(c) {
			return false
		}
	}
	return len(b) > 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// rawBody copies a response body from the upstream reader to the
// client, through out: what is at hand is gathered, and out goes to the
// client whenever the next read would wait (or it grew large), so a
// body already buffered leaves with its head in one write and each part
// of a stream reaches the client as it comes.
type rawBody struct {
	src  *bufio.Reader
	dst  net.Conn
	out  []byte
	b    *backend
	up   *rawUpstream
	n    int64 // body bytes copied
	werr error // the client write that failed
}

// rawFlushAt is how much gathered output is written without waiting for
// a read that would block.
const rawFlushAt = 32 << 10

func (w *rawBody) flush() error {
	if len(w.out) == 0 || w.werr != nil {
		return w.werr
	}
	_, err := w.dst.Write(w.out)
	w.out = w.out[:0]
	if err != nil {
		w.werr = fmt.Errorf("write to client: %w", err)
	}
	return w.werr
}

// fill makes at least one byte available in src, flushing first if the
// read would wait.
func (w *rawBody) fill() error {
	if w.b.gone.Err() != nil {
		return errCutOff
	}
	if w.src.Buffered() > 0 {
		return nil
	}
	if err := w.flush(); err != nil {
		return err
	}
	if err := w.up.arm(time.Now()); err != nil {
		return err
	}
	_, err := w.src.Peek(1)
	return err
}

// copyN copies n bytes of src to out.
func (w *rawBody) copyN(n int64, count bool) error {
	for n > 0 {
		if err := w.fill(); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		k := int(min(n, int64(w.src.Buffered())))
		b, _ := w.src.Peek(k)
		w.out = append(w.out, b...)
		w.src.Discard(k)
		n -= int64(k)
		if count {
			w.n += int64(k)
		}
		if len(w.out) >= rawFlushAt {
			if err := w.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyToEOF copies src until the backend closes the connection.
func (w *rawBody) copyToEOF() error {
	for {
		if err := w.fill(); err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
		if err := w.copyN(int64(w.src.Buffered()), true); err != nil {
			return err
		}
	}
}

// line reads one CRLF-ended line of a chunked body.
func (w *rawBody) line() ([]byte, error) {
	if err := w.fill(); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	l, err := w.src.ReadSlice('\n')
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err == bufio.ErrBufferFull {
			err = fmt.Errorf("chunked body line too long: %w", errBadResponse)
		}
		return nil, err
	}
	if len(l) < 2 || l[len(l)-2] != '\r' {
		return nil, fmt.Errorf("chunked body line: %w", errBadResponse)
	}
	return l, nil
}

// copyChunked copies a chunked body as it is, chunk by chunk, and its
// trailer without the fields a trailer may not carry.
func (w *rawBody) copyChunked() error {
	for {
		l, err := w.line()
		if err != nil {
			return err
		}
		size := l[:len(l)-2]
		if i := bytes.IndexByte(size, ';'); i >= 0 {
			size = size[:i]
		}
		size = bytes.TrimRight(size, " \t")
		n, err := strconv.ParseInt(string(size), 16, 64)
		if err != nil || !allDigits(size, isHex) {
			return fmt.Errorf("chunk size %.20q: %w", l, errBadResponse)
		}
		w.out = append(w.out, l...)
		if n == 0 {
			return w.copyTrailer()
		}
		if err := w.copyN(n, true); err != nil {
			return err
		}
		l, err = w.line()
		if err != nil {
			return err
		}
		if len(l) != 2 {
			return fmt.Errorf("chunk end: %w", errBadResponse)
		}
		w.out = append(w.out, l...)
	}
}

func (w *rawBody) copyTrailer() error {
	for {
		l, err := w.line()
		if err != nil {
			return err
		}
		if len(l) == 2 {
			w.out = append(w.out, l...)
			return w.flush()
		}
		f, err := parseField(l, 0, len(l)-2)
		if err != nil {
			return fmt.Errorf("trailer field: %w", errBadResponse)
		}
		if responseDropped.bits(l[f.name[0]:f.name[1]]) == 0 {
			w.out = append(w.out, l...)
		}
	}
}
