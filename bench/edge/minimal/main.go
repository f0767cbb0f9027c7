// Command minimal is the edge benchmark's reference for what any proxy
// written in Go can reach on the machine: HTTP/1.1 only, one goroutine
// per client connection with an upstream connection of its own, the
// request's head copied with the same forwarding headers the others set,
// responses with a Content-Length only, and an access line per request
// through a 64 KiB buffer flushed every 250 ms, as skiff and nginx log.
// No routing, balancing, health, metrics, timeouts, streaming or safety:
// it is not a proxy anyone should run, only the floor of Go's overhead
// (its runtime, its network poller, a goroutine per connection) that
// skiff's edge pays as well.
//
// Usage: minimal LISTEN_ADDR BACKEND_ADDR ACCESS_LOG
package main

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"time"
)

func main() {
	if len(os.Args) != 4 {
		log.Fatal("usage: minimal LISTEN_ADDR BACKEND_ADDR ACCESS_LOG")
	}
	f, err := os.Create(os.Args[3])
	if err != nil {
		log.Fatal(err)
	}
	al := &accessLog{w: bufio.NewWriterSize(f, 64<<10)}
	go al.flushEvery(250 * time.Millisecond)
	ln, err := net.Listen("tcp", os.Args[1])
	if err != nil {
		log.Fatal(err)
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go serve(c, os.Args[2], al)
	}
}

type accessLog struct {
	mu sync.Mutex
	w  *bufio.Writer
}

func (l *accessLog) flushEvery(d time.Duration) {
	for range time.Tick(d) {
		l.mu.Lock()
		l.w.Flush()
		l.mu.Unlock()
	}
}

func (l *accessLog) line(start time.Time, host []byte, status int, d time.Duration, id []byte) {
	var b [256]byte
	out := append(b[:0], `{"time":"`...)
	out = start.UTC().AppendFormat(out, time.RFC3339Nano)
	out = append(out, `","host":"`...)
	out = append(out, host...)
	out = append(out, `","status":`...)
	out = strconv.AppendInt(out, int64(status), 10)
	out = append(out, `,"duration":`...)
	out = strconv.AppendFloat(out, d.Seconds(), 'f', 6, 64)
	out = append(out, `,"request_id":"`...)
	out = append(out, id...)
	out = append(out, "\"}\n"...)
	l.mu.Lock()
	l.w.Write(out)
	l.mu.Unlock()
}

var errHead = errors.New("no complete head")

// head peeks at the message head in r, up to and including its blank
// line, waiting for more bytes as needed.
func head(r *bufio.Reader) ([]byte, error) {
	for {
		b, _ := r.Peek(r.Buffered())
		if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
			return b[:i+4], nil
		}
		if r.Buffered() == r.Size() {
			return nil, errHead
		}
		if _, err := r.Peek(r.Buffered() + 1); err != nil {
			return nil, err
		}
	}
}

func serve(c net.Conn, backend string, al *accessLog) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 16<<10)
	peer := []byte(c.RemoteAddr().(*net.TCPAddr).IP.String())
	var up net.Conn
	var ubr *bufio.Reader
	defer func() {
		if up != nil {
			up.Close()
		}
	}()
	req := make([]byte, 0, 4096)
	resp := make([]byte, 0, 8192)
	var id [32]byte
	for {
		h, err := head(br)
		if err != nil {
			return
		}
		start := time.Now()
		var raw [16]byte
		for i := 0; i < 16; i += 8 {
			v := rand.Uint64()
			for j := range 8 {
				raw[i+j] = byte(v >> (8 * j))
			}
		}
		hex.Encode(id[:], raw[:])

		line := bytes.IndexByte(h, '\n') + 1
		req = append(req[:0], h[:line]...)
		var host []byte
		for rest := h[line : len(h)-2]; len(rest) > 0; {
			e := bytes.IndexByte(rest, '\n') + 1
			field := rest[:e]
			rest = rest[e:]
			name, value, _ := bytes.Cut(field, []byte(":"))
			switch {
			case bytes.EqualFold(name, []byte("Host")):
				host = bytes.TrimSpace(value)
			case bytes.EqualFold(name, []byte("Connection")):
				continue
			}
			req = append(req, field...)
		}
		req = append(req, "X-Forwarded-For: "...)
		req = append(req, peer...)
		req = append(req, "\r\nX-Forwarded-Host: "...)
		req = append(req, host...)
		req = append(req, "\r\nX-Forwarded-Proto: http\r\nForwarded: for="...)
		req = append(req, peer...)
		req = append(req, ";host="...)
		req = append(req, host...)
		req = append(req, ";proto=http\r\nX-Request-Id: "...)
		req = append(req, id[:]...)
		req = append(req, "\r\n\r\n"...)
		br.Discard(len(h))

		if up == nil {
			if up, err = net.Dial("tcp", backend); err != nil {
				return
			}
			ubr = bufio.NewReaderSize(up, 16<<10)
		}
		if _, err := up.Write(req); err != nil {
			return
		}
		rh, err := head(ubr)
		if err != nil {
			return
		}
		status, _ := strconv.Atoi(string(rh[9:12]))
		length := -1
		resp = resp[:0]
		for rest := rh[:len(rh)-2]; len(rest) > 0; {
			e := bytes.IndexByte(rest, '\n') + 1
			field := rest[:e]
			rest = rest[e:]
			if name, value, ok := bytes.Cut(field, []byte(":")); ok && bytes.EqualFold(name, []byte("Content-Length")) {
				length, _ = strconv.Atoi(string(bytes.TrimSpace(value)))
			}
			resp = append(resp, field...)
		}
		if length < 0 {
			return // only bodies of known length
		}
		resp = append(resp, "X-Request-Id: "...)
		resp = append(resp, id[:]...)
		resp = append(resp, "\r\n\r\n"...)
		ubr.Discard(len(rh))
		for n := length; n > 0; {
			b, err := ubr.Peek(min(n, ubr.Size()))
			if err != nil {
				return
			}
			resp = append(resp, b...)
			ubr.Discard(len(b))
			n -= len(b)
		}
		if _, err := c.Write(resp); err != nil {
			return
		}
		al.line(start, host, status, time.Since(start), id[:])
	}
}
