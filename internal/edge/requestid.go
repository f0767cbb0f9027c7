package edge

import (
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
)

// requestIDHeader carries the id that ties a client's request to the
// edge's and the app's logs.
const requestIDHeader = "X-Request-Id"

// maxRequestIDLen bounds an id taken from a client, so a client cannot
// fill logs with it.
const maxRequestIDLen = 128

// requestID keeps the client's X-Request-ID when it is a single sane
// token, and makes a new one otherwise, so that whatever reaches logs and
// the app is short and printable.
func requestID(h http.Header) string {
	if vs := h.Values(requestIDHeader); len(vs) == 1 && validRequestID(vs[0]) {
		return vs[0]
	}
	return newRequestID()
}

// validRequestID reports whether id is 1 to 128 characters of
// [A-Za-z0-9-_.].
func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// newRequestID returns 128 random bits in hex. An id needs to be unique,
// not secret: it ties log lines together, and a client can send its own.
// So the bits come from math/rand/v2's generator (ChaCha8, seeded by the
// operating system, per thread) rather than crypto/rand, which cost more
// than the rest of the edge's work on an id.
func newRequestID() string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	var h [32]byte
	hex.Encode(h[:], b[:])
	return string(h[:])
}
