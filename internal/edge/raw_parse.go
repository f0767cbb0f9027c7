package edge

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
)

// Request heads on the raw listener (raw.go). The parser is strict and
// small: it accepts only what the raw path serves itself, and says
// "hand off" for anything else, so that fasthttp serves (or refuses) it
// exactly as it does on the fasthttp listener.

// errHandOff says a request is not the raw path's: it goes to fasthttp,
// with nothing written for it yet.
var errHandOff = errors.New("request handed to fasthttp")

// rawField is one header field of a head, as offsets into it.
type rawField struct {
	name, value [2]int32
}

// rawRequest is a parsed request head. Its slices and offsets point into
// the connection's read buffer, valid until the head is discarded.
type rawRequest struct {
	head   []byte // the whole head, blank line included
	line   []byte // request line, without CRLF
	method []byte
	target []byte
	fields []rawField
	// What the raw path needs of the fields.
	host      []byte
	requestID []byte
	release   []byte
	cookies   [][]byte
	// idCount counts X-Request-Id fields: only a single one is kept.
	idCount int
	// drop is requestDropped's bits of the fields present.
	drop uint64
	// connection holds the Connection fields' values.
	connection [][]byte
	close      bool
}

func (r *rawRequest) reset() {
	fields, cookies, conn := r.fields[:0], r.cookies[:0], r.connection[:0]
	*r = rawRequest{fields: fields, cookies: cookies, connection: conn}
}

func (r *rawRequest) name(f rawField) []byte  { return r.head[f.name[0]:f.name[1]] }
func (r *rawRequest) value(f rawField) []byte { return r.head[f.value[0]:f.value[1]] }

// parseRequest parses the request head h (up to and including its blank
// line, CRLF line ends) into r. It returns errHandOff for any head the raw
// path does not serve: not HTTP/1.1, not origin-form, a body, an upgrade,
// Expect, a Host other than exactly one, or anything unusual in its
// syntax.
func parseRequest(h []byte, r *rawRequest) error {
	r.reset()
	r.head = h
	eol := bytes.IndexByte(h, '\n')
	if eol < 1 || h[eol-1] != '\r' {
		return errHandOff
	}
	r.line = h[:eol-1]
	sp := bytes.IndexByte(r.line, ' ')
	if sp <= 0 {
		return errHandOff
	}
	r.method = r.line[:sp]
	for _, c := range r.method {
		if !tchar(c) {
			return errHandOff
		}
	}
	rest := r.line[sp+1:]
	sp = bytes.IndexByte(rest, ' ')
	if sp <= 0 || string(rest[sp+1:]) != "HTTP/1.1" {
		return errHandOff
	}
	r.target = rest[:sp]
	if r.target[0] != '/' {
		return errHandOff // absolute-form, authority-form or "*"
	}
	for i, c := range r.target {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return errHandOff
		}
		if c == '%' && (i+2 >= len(r.target) || !isHex(r.target[i+1]) || !isHex(r.target[i+2])) {
			return errHandOff // a broken escape: fasthttp's to judge
		}
	}
	hosts := 0
	pos := eol + 1
	for {
		eol = bytes.IndexByte(h[pos:], '\n')
		if eol < 1 || h[pos+eol-1] != '\r' {
			return errHandOff
		}
		end := pos + eol - 1 // the CR
		if end == pos {
			break // the blank line
		}
		f, err := parseField(h, pos, end)
		if err != nil {
			return err
		}
		r.fields = append(r.fields, f)
		name, value := r.name(f), r.value(f)
		r.drop |= requestDropped.bits(name)
		switch len(name) {
		case 4:
			if bytes.EqualFold(name, []byte("Host")) {
				hosts++
				r.host = value
			}
		case 6:
			if bytes.EqualFold(name, []byte("Cookie")) {
				r.cookies = append(r.cookies, value)
			} else if bytes.EqualFold(name, []byte("Expect")) {
				return errHandOff
			}
		case 7:
			if bytes.EqualFold(name, []byte("Upgrade")) {
				return errHandOff
			}
		case 10:
			if bytes.EqualFold(name, []byte("Connection")) {
				if hasToken(value, "upgrade") {
					return errHandOff
				}
				if hasToken(value, "close") {
					r.close = true
				}
				r.connection = append(r.connection, value)
			}
		case 12:
			if bytes.EqualFold(name, []byte(requestIDHeader)) {
				r.idCount++
				r.requestID = value
			}
		case 14:
			if bytes.EqualFold(name, []byte("Content-Length")) && string(value) != "0" {
				return errHandOff
			}
		case 15:
			if bytes.EqualFold(name, []byte(ReleaseHeader)) {
				r.release = value
			}
		case 17:
			if bytes.EqualFold(name, []byte("Transfer-Encoding")) {
				return errHandOff
			}
		}
		pos = end + 2
	}
	if hosts != 1 || !validHostBytes(r.host) {
		return errHandOff
	}
	return nil
}

// parseField parses the field h[pos:end] (without its CRLF): a token
// name, a colon right after it, and a value without control characters
// but HTAB, its surrounding blanks trimmed. A line starting with a blank
// (obs-fold) or holding a bare CR or LF, or NUL, is refused.
func parseField(h []byte, pos, end int) (rawField, error) {
	var f rawField
	i := pos
	for i < end && h[i] != ':' {
		if !tchar(h[i]) {
			return f, errHandOff
		}
		i++
	}
	if i == pos || i == end {
		return f, errHandOff
	}
	f.name = [2]int32{int32(pos), int32(i)}
	i++
	for i < end && (h[i] == ' ' || h[i] == '\t') {
		i++
	}
	j := end
	for j > i && (h[j-1] == ' ' || h[j-1] == '\t') {
		j--
	}
	for k := i; k < j; k++ {
		if c := h[k]; c < ' ' && c != '\t' || c == 0x7f {
			return f, errHandOff
		}
	}
	f.value = [2]int32{int32(i), int32(j)}
	return f, nil
}

// tchar reports whether c is an RFC 9110 tchar, by table: it runs for
// every byte of every field name.
func tchar(c byte) bool {
	return c < 0x80 && tokenChars[c]
}

var tokenChars = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// validHostBytes accepts a Host value of the characters a route's host,
// a port or a bracketed IPv6 literal may hold; anything else goes to
// fasthttp, which has its own opinion of it.
func validHostBytes(h []byte) bool {
	if len(h) == 0 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '-' || c == '_' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v holds tok, which
// must be lower case.
func hasToken(v []byte, tok string) bool {
	for f := range bytes.SplitSeq(v, []byte{','}) {
		if bytes.EqualFold(bytes.TrimSpace(f), []byte(tok)) {
			return true
		}
	}
	return false
}

// rawPath is the request's path as ServeHTTP sees it (requestPath):
// percent-decoded, not cleaned.
func rawPath(target []byte) string {
	if i := bytes.IndexByte(target, '?'); i >= 0 {
		target = target[:i]
	}
	p := string(target)
	if strings.IndexByte(p, '%') >= 0 {
		if u, err := url.PathUnescape(p); err == nil {
			p = u
		}
	}
	return p
}

// cookie returns the value of the cookie name among the Cookie fields,
// or "".
func (r *rawRequest) cookie(name string) string {
	for _, v := range r.cookies {
		for part := range bytes.SplitSeq(v, []byte{';'}) {
			k, val, ok := bytes.Cut(bytes.TrimSpace(part), []byte{'='})
			if ok && string(k) == name {
				return string(bytes.Trim(val, `"`))
			}
		}
	}
	return ""
}

// connectionNames reports whether the Connection fields name k.
func (r *rawRequest) connectionNames(k []byte) bool { return namedIn(r.connection, k) }

// namedIn reports whether one of the comma-separated lists vs names k.
func namedIn(vs [][]byte, k []byte) bool {
	for _, v := range vs {
		for f := range bytes.SplitSeq(v, []byte{','}) {
			if bytes.EqualFold(bytes.TrimSpace(f), k) {
				return true
			}
		}
	}
	return false
}

// headEnd returns the length of the head at the start of b, up to and
// including its blank line, or -1 if b holds no complete head.
// A head ending in bare LFs counts too, so that parseRequest refuses it
// at once rather than wait for a CRLF that will not come.
func headEnd(b []byte) int {
	end := -1
	if i := bytes.Index(b, []byte("\n\r\n")); i >= 0 {
		end = i + 3
	}
	if i := bytes.Index(b, []byte("\n\n")); i >= 0 && (end < 0 || i+2 < end) {
		end = i + 2
	}
	return end
}
