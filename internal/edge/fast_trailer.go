package edge

import (
	"bytes"
	"io"
	"iter"
)

// Trailers on the fasthttp listener.
//
// fasthttp keeps the names a message announces in its Trailer header
// apart from its fields, and appends the trailer fields it reads after a
// chunked body to the header fields; when it writes a chunked body it
// then writes the announced fields as the trailer. The edge copies a
// message's header before the body is read and drops Trailer with the
// hop-by-hop headers, so on its own fasthttp would forward no trailer.
// The edge therefore announces on the forwarded message what the sender
// announced, and once the body has ended (fasthttp has just read the
// trailer, and has not yet written the forwarded one) it copies the
// fields the body brought, announced or not, as the net/http listener
// forwards them, but for the fields a header may not carry either
// (trailerCopy.drop). Requests for h2c backends are not forwarded here but
// through fasthttp's adaptor (fast.go), which reads bodies whole and
// forwards no trailer either way.

// fastHeader is what trailerCopy needs of fasthttp's request and
// response headers.
type fastHeader interface {
	ContentLength() int
	All() iter.Seq2[[]byte, []byte]
	Trailers() iter.Seq[[]byte]
	AddTrailerBytes(key []byte) error
	AddBytesKV(key, value []byte)
}

// trailerCopy carries the trailer of one message from src, the header
// its body is read with, to dst, the header it is forwarded with.
type trailerCopy struct {
	src, dst fastHeader
	// drop names fields that never pass as trailers: those the edge
	// drops from a message's header, so that a trailer cannot bring
	// back what the header may not carry (a forwarding header the edge
	// sets, a hop-by-hop field).
	drop *headerSet
	// fields is how many fields src had before its body ended: the
	// trailer's fields come after them.
	fields int
	done   bool
}

// forwardTrailers announces on dst the trailer fields src announces and
// returns the copy to make when src's body ends. Only a chunked body
// carries a trailer: for any other, it does nothing and returns nil,
// whose copy does nothing either.
func forwardTrailers(src, dst fastHeader, drop *headerSet) *trailerCopy {
	if src.ContentLength() != -1 {
		return nil
	}
	for k := range src.Trailers() {
		if drop.bits(k) == 0 {
			dst.AddTrailerBytes(k)
		}
	}
	return &trailerCopy{src: src, dst: dst, drop: drop, fields: headerFields(src)}
}

// headerFields counts h's fields but Connection, which fasthttp lists
// after the others and a trailer cannot hold.
func headerFields(h fastHeader) int {
	n := 0
	for k := range h.All() {
		if !isConnection(k) {
			n++
		}
	}
	return n
}

func isConnection(k []byte) bool { return bytes.EqualFold(k, []byte("Connection")) }

// copy copies the fields src gained when its body ended to dst's
// trailer, announcing those the sender did not. It runs once.
func (tc *trailerCopy) copy() {
	if tc == nil || tc.done {
		return
	}
	tc.done = true
	i := 0
	for k, v := range tc.src.All() {
		if isConnection(k) {
			continue
		}
		if i++; i <= tc.fields || tc.drop.bits(k) != 0 {
			continue
		}
		if !announced(tc.dst, k) {
			tc.dst.AddTrailerBytes(k)
		}
		tc.dst.AddBytesKV(k, v)
	}
}

func announced(h fastHeader, k []byte) bool {
	for a := range h.Trailers() {
		if bytes.EqualFold(a, k) {
			return true
		}
	}
	return false
}

// reader returns r, copying the trailer when r ends.
func (tc *trailerCopy) reader(r io.Reader) io.Reader {
	if tc == nil {
		return r
	}
	return &trailerReader{r: r, tc: tc}
}

type trailerReader struct {
	r  io.Reader
	tc *trailerCopy
}

func (tr *trailerReader) Read(p []byte) (int, error) {
	n, err := tr.r.Read(p)
	if err == io.EOF {
		tr.tc.copy()
	}
	return n, err
}
