package edge

import (
	"bytes"
	"math/bits"
	"net"
	"net/http"
	"net/netip"
	"unsafe"

	"github.com/valyala/fasthttp"
)

// Header handling on the fasthttp listener: hop-by-hop headers out, the
// edge's forwarding headers and request id in.

// hopHeaders are removed from requests and responses: they describe one
// connection, not the message (RFC 9110 §7.6.1). Transfer-Encoding is
// fasthttp's own to write. Connection comes first: dropHeaders looks
// for it at bit 0 of a headerSet built on them.
var hopHeaders = []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade"}

var forwardingHeaders = []string{"X-Forwarded-For", "Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto"}

// requestDropped and responseDropped are what leaves a forwarded request
// and its response before the edge sets its own fields: the hop-by-hop
// headers, and the ones the edge sets next (forwarding headers and
// X-Request-Id on the request, X-Request-Id on the response), so the
// edge may set its own without looking for earlier ones.
var (
	requestDropped  = newHeaderSet(append(append(append([]string{}, hopHeaders...), forwardingHeaders...), requestIDHeader))
	responseDropped = newHeaderSet(append(append([]string{}, hopHeaders...), requestIDHeader))
)

// The names of the fields the edge sets, canonical, so that SetCanonical
// takes them as they are.
var (
	hdrXForwardedFor   = []byte("X-Forwarded-For")
	hdrXForwardedHost  = []byte("X-Forwarded-Host")
	hdrXForwardedProto = []byte("X-Forwarded-Proto")
	hdrForwarded       = []byte("Forwarded")
	hdrRequestID       = []byte(requestIDHeader)
)

// headerSet is a set of up to 64 header names, found by length first: a
// field's name is compared, case-insensitively, only with the names of
// its length.
type headerSet struct {
	names []string
	// byLen has bit i set, at the length of names[i], for each i.
	byLen [32]uint64
}

func newHeaderSet(names []string) *headerSet {
	s := &headerSet{names: names}
	for i, n := range names {
		if len(n) >= len(s.byLen) || i >= 64 {
			panic("edge: header name too long or too many names: " + n)
		}
		s.byLen[len(n)] |= 1 << i
	}
	return s
}

// bits returns the bit of k's name in s, or 0.
func (s *headerSet) bits(k []byte) uint64 {
	if len(k) >= len(s.byLen) {
		return 0
	}
	var found uint64
	for m := s.byLen[len(k)]; m != 0; m &= m - 1 {
		i := bits.TrailingZeros64(m)
		if bytes.EqualFold(k, []byte(s.names[i])) {
			found |= 1 << i
		}
	}
	return found
}

// removeRequestHopHeaders removes from a forwarded request the headers
// named in its Connection header, then those of requestDropped. So a
// client's "Connection: X-Forwarded-For" cannot remove a header the edge
// sets (Go CVE-2021-33197). One pass over the headers finds whether
// there is anything to remove; most messages have nothing. It ranges
// over the concrete header type, so that the compiler inlines the
// iteration and the request costs no allocation.
func removeRequestHopHeaders(h *fasthttp.RequestHeader) {
	var found uint64
	for k := range h.All() {
		found |= requestDropped.bits(k)
	}
	requestDropped.drop(found, h.Peek, h.Del)
}

// removeResponseHopHeaders is removeRequestHopHeaders for a response,
// with responseDropped.
func removeResponseHopHeaders(h *fasthttp.ResponseHeader) {
	var found uint64
	for k := range h.All() {
		found |= responseDropped.bits(k)
	}
	responseDropped.drop(found, h.Peek, h.Del)
}

// drop deletes the fields Connection names, if found has it (bit 0),
// then the headers whose bits are set in found; deleting a name deletes
// all its fields at once.
func (s *headerSet) drop(found uint64, peek func(string) []byte, del func(string)) {
	if found&1 != 0 {
		dropConnectionTokens(peek, del)
	}
	for ; found != 0; found &= found - 1 {
		del(s.names[bits.TrailingZeros64(found)])
	}
}

// dropConnectionTokens deletes Connection and the fields it names.
func dropConnectionTokens(peek func(string) []byte, del func(string)) {
	c := peek("Connection")
	if len(c) == 0 {
		return
	}
	for f := range bytes.SplitSeq(c, []byte{','}) {
		if f = bytes.TrimSpace(f); len(f) > 0 {
			del(string(f))
		}
	}
	del("Connection")
}

// setForwarded sets X-Forwarded-For, -Host, -Proto and Forwarded on the
// upstream request as the net/http listener's setForwarded does. A
// client that is no trusted proxy, the common case, has its values
// replaced (removeRequestHopHeaders removed them), which takes no more than the
// client's address and no allocation; a trusted proxy's request goes
// through setForwarded itself.
func (s *FastServer) setForwarded(ctx *fasthttp.RequestCtx, ex *fastExchange, h *fasthttp.RequestHeader) {
	var peer netip.Addr
	ok := false
	if ta, isTCP := ctx.RemoteAddr().(*net.TCPAddr); isTCP {
		peer, ok = ta.AddrPort().Addr().Unmap(), true
	}
	proto := "http"
	if ctx.IsTLS() {
		proto = "https"
	}
	if ok && len(s.trusted) > 0 && s.trusted.contains(peer) {
		s.setForwardedTrusted(ctx, h, ex.host)
		return
	}
	var buf [256]byte
	if ok {
		h.SetCanonical(hdrXForwardedFor, peer.AppendTo(buf[:0]))
	}
	h.SetCanonical(hdrXForwardedHost, s2b(ex.host))
	h.SetCanonical(hdrXForwardedProto, s2b(proto))
	h.SetCanonical(hdrForwarded, appendForwardedElement(buf[:0], peer, ok, ex.host, proto))
}

// s2b views s as bytes, for fasthttp's setters, which copy what they
// are given and never write to it.
func s2b(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// setForwardedTrusted hands a trusted proxy's request to setForwarded,
// through the little of an *http.Request it reads.
func (s *FastServer) setForwardedTrusted(ctx *fasthttp.RequestCtx, h *fasthttp.RequestHeader, host string) {
	r := http.Request{RemoteAddr: ctx.RemoteAddr().String(), Host: host, Header: http.Header{}}
	if ctx.IsTLS() {
		r.TLS = ctx.TLSConnectionState()
	}
	for _, k := range forwardingHeaders {
		for _, v := range ctx.Request.Header.PeekAll(k) {
			r.Header.Add(k, string(v))
		}
	}
	fw := http.Header{}
	setForwarded(fw, &r, s.trusted)
	for _, k := range forwardingHeaders {
		h.Del(k)
		if v, ok := fw[k]; ok && len(v) > 0 {
			h.Set(k, v[0])
		}
	}
}
