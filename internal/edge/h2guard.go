package edge

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"net"
	"net/http"
	"strings"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The edge's HTTP/2 server is golang.org/x/net/http2 (the code net/http
// bundles), reached through TLSNextProto so that each connection can be
// wrapped in an h2Guard first: net/http's bundled server only takes a
// *tls.Conn, which cannot be wrapped.
//
// The guard reads the client's frames before the server does and fixes
// the two places where Go's server departs from RFC 9113 (found by
// h2spec, see TestH2Spec):
//
//   - a SETTINGS frame naming one identifier twice is valid and its values
//     apply in order, but Go hangs up on it (§6.5.3). The guard keeps each
//     identifier's last value, which is equivalent.
//   - a request carrying a connection-specific field (connection,
//     keep-alive, proxy-connection, transfer-encoding, upgrade) or TE other
//     than "trailers" is malformed and must get a stream error of type
//     PROTOCOL_ERROR (§8.2.2); Go answers it. The guard appends a field
//     with an upper-case name to that header block, which the server must
//     (§8.2.1) and does reject with RST_STREAM PROTOCOL_ERROR. Rejecting
//     the block rather than dropping or closing keeps both HPACK decoders
//     (the guard's and the server's) in step, lets other streams on the
//     connection go on, and never writes to the connection, so nothing can
//     interleave with the frames the server is writing.
//
// Everything else passes through unchanged. The cost is one frame header
// parse per frame; SETTINGS, HEADERS and CONTINUATION frames are buffered
// whole (at most h2MaxFrameSize) and header blocks are HPACK-decoded once
// more, which the checks need anyway.

const (
	// h2MaxFrameSize is the largest frame the server reads, and advertises
	// in SETTINGS_MAX_FRAME_SIZE: the protocol's initial value (RFC 9113
	// §6.5.2). A client may not send HEADERS larger than that before it
	// has seen the server's SETTINGS, so advertising more only makes the
	// server accept frames it must reject (h2spec 4.2/3); DATA frames of
	// 16 KiB cost nothing measurable. The guard buffers at most one frame
	// of this size; larger ones the server rejects with FRAME_SIZE_ERROR.
	h2MaxFrameSize = 16 << 10

	// h2HeaderTableSize is the HPACK dynamic table size of the server's
	// decoder (x/net's default, so never advertised). The guard's decoder
	// must allow exactly as much to stay in step.
	h2HeaderTableSize = 4096

	h2FrameHeaderLen = 9
	// h2MaxSettings is how many settings one frame may carry before the
	// server hangs up on it as suspicious; the guard leaves such frames
	// alone so that the server still does.
	h2MaxSettings = 100
	h2SettingLen  = 6
)

// h2Rejected is the field the guard appends to a header block the server
// must reject: literal without indexing, new name (RFC 7541 §6.2.2), so
// it leaves the dynamic table alone. The upper-case name makes the block
// malformed (RFC 9113 §8.2.1); the name also tells a reader of a packet
// capture why.
var h2Rejected = func() []byte {
	const name, value = "X-Skiff-Malformed", "connection-specific field"
	b := []byte{0x00, byte(len(name))}
	b = append(b, name...)
	b = append(b, byte(len(value)))
	return append(b, value...)
}()

// configureHTTP2 makes srv serve HTTP/2 on TLS connections that
// negotiated h2, through an h2Guard.
func configureHTTP2(srv *http.Server) {
	h2 := &http2.Server{
		MaxReadFrameSize:          h2MaxFrameSize,
		MaxDecoderHeaderTableSize: h2HeaderTableSize,
	}
	// ConfigureServer also hooks graceful shutdown (GOAWAY on
	// srv.Shutdown). It fails only for a TLSConfig with cipher suites
	// HTTP/2 forbids; srv has no TLSConfig.
	if err := http2.ConfigureServer(srv, h2); err != nil {
		panic("edge: configure HTTP/2: " + err.Error())
	}
	maxString := srv.MaxHeaderBytes
	if maxString <= 0 {
		maxString = http.DefaultMaxHeaderBytes
	}
	// The server's decoder limits strings to about MaxHeaderBytes; the
	// guard's must allow at least as much, or it would give up (see
	// h2Guard.off) where the server goes on.
	maxString += 64 << 10
	srv.TLSNextProto[http2.NextProtoTLS] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
		// As x/net's own TLSNextProto entry does: net/http's handler
		// carries the listener's base context.
		var ctx context.Context
		if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
			ctx = bc.BaseContext()
		}
		h2.ServeConn(newH2Guard(c, c.ConnectionState(), maxString), &http2.ServeConnOpts{
			Context:    ctx,
			Handler:    h,
			BaseConfig: hs,
		})
	}
}

// h2Guard is a client's HTTP/2 connection as the server reads it: the
// client's frames, with repeated settings folded and malformed header
// blocks marked for rejection (see configureHTTP2). Writes go straight
// to the connection.
type h2Guard struct {
	net.Conn
	state tls.ConnectionState
	br    *bufio.Reader

	// pass is how many bytes of the current frame (or of the client
	// preface) the server may read as they are.
	pass int
	// pending is a rewritten frame the server has not read yet.
	pending []byte
	// off is set once the client sent something the server will end the
	// connection over (an oversized or malformed frame, a bad HPACK
	// block): from there on the guard passes bytes through, as it cannot
	// follow the server's state any further.
	off bool

	dec *hpack.Decoder
	// inBlock: a header block continues in CONTINUATION frames on
	// blockStream.
	inBlock     bool
	blockStream uint32
	// malformed: the current header block has a forbidden field.
	malformed bool
}

// newH2Guard wraps c, whose TLS state is state. maxString bounds one
// HPACK string, as the server's decoder does.
func newH2Guard(c net.Conn, state tls.ConnectionState, maxString int) *h2Guard {
	g := &h2Guard{
		Conn:  c,
		state: state,
		br:    bufio.NewReaderSize(c, h2FrameHeaderLen+h2MaxFrameSize),
		pass:  len(http2.ClientPreface),
	}
	g.dec = hpack.NewDecoder(h2HeaderTableSize, g.field)
	g.dec.SetMaxStringLength(maxString)
	return g
}

// ConnectionState lets the server see the TLS state (Request.TLS, and
// its check of the TLS version and cipher suite).
func (g *h2Guard) ConnectionState() tls.ConnectionState { return g.state }

// Read gives the server the client's bytes, one examined frame at a time.
func (g *h2Guard) Read(p []byte) (int, error) {
	for {
		switch {
		case len(g.pending) > 0:
			n := copy(p, g.pending)
			g.pending = g.pending[n:]
			return n, nil
		case g.off:
			return g.br.Read(p)
		case g.pass > 0:
			if len(p) > g.pass {
				p = p[:g.pass]
			}
			n, err := g.br.Read(p)
			g.pass -= n
			return n, err
		}
		if err := g.examine(); err != nil {
			return 0, err
		}
	}
}

// examine looks at the next frame and sets pass or pending for it. It
// returns only read errors; bytes it has peeked stay buffered.
func (g *h2Guard) examine() error {
	hdr, err := g.br.Peek(h2FrameHeaderLen)
	if err != nil {
		return err
	}
	length := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
	typ, flags := http2.FrameType(hdr[3]), http2.Flags(hdr[4])
	stream := binary.BigEndian.Uint32(hdr[5:]) & (1<<31 - 1)
	g.pass = h2FrameHeaderLen + length
	if g.inBlock && (typ != http2.FrameContinuation || stream != g.blockStream) {
		// The server ends the connection over a broken header block.
		g.off = true
		return nil
	}
	switch typ {
	case http2.FrameSettings, http2.FrameHeaders, http2.FrameContinuation:
	default:
		return nil
	}
	if length > h2MaxFrameSize {
		g.off = true
		return nil
	}
	frame, err := g.br.Peek(h2FrameHeaderLen + length)
	if err != nil {
		g.pass = 0
		return err
	}
	switch typ {
	case http2.FrameSettings:
		if folded := foldSettings(frame, flags, stream); folded != nil {
			g.replace(folded)
		}
	case http2.FrameHeaders:
		g.headers(frame, flags, stream)
	case http2.FrameContinuation:
		if !g.inBlock {
			g.off = true
			return nil
		}
		g.fragment(frame, frame[h2FrameHeaderLen:], flags.Has(http2.FlagContinuationEndHeaders))
	}
	return nil
}

// replace has the server read b instead of the frame at hand.
func (g *h2Guard) replace(b []byte) {
	g.br.Discard(g.pass)
	g.pass, g.pending = 0, b
}

// headers starts a header block, parsing the HEADERS frame as x/net's
// Framer does so as to decode exactly the blocks the server decodes.
func (g *h2Guard) headers(frame []byte, flags http2.Flags, stream uint32) {
	p := frame[h2FrameHeaderLen:]
	if stream == 0 {
		g.off = true
		return
	}
	pad := 0
	if flags.Has(http2.FlagHeadersPadded) {
		if len(p) < 1 {
			g.off = true
			return
		}
		pad, p = int(p[0]), p[1:]
	}
	if flags.Has(http2.FlagHeadersPriority) {
		if len(p) < 5 {
			g.off = true
			return
		}
		p = p[5:]
	}
	end := flags.Has(http2.FlagHeadersEndHeaders)
	if pad > len(p) {
		// A stream error for the server, which then decodes nothing of
		// this block: neither does the guard. What follows a block
		// that does not end here, the server ends the connection over.
		g.off = !end
		return
	}
	g.inBlock, g.blockStream, g.malformed = true, stream, false
	g.fragment(frame, p[:len(p)-pad], end)
}

// fragment decodes one piece of a header block; at its end, a malformed
// block gets h2Rejected appended in a CONTINUATION frame of its own
// (there may be no room in frame).
func (g *h2Guard) fragment(frame, frag []byte, end bool) {
	if _, err := g.dec.Write(frag); err != nil {
		g.off = true
		return
	}
	if !end {
		return
	}
	g.inBlock = false
	if err := g.dec.Close(); err != nil {
		g.off = true
		return
	}
	if !g.malformed {
		return
	}
	out := make([]byte, 0, len(frame)+h2FrameHeaderLen+len(h2Rejected))
	out = append(out, frame...)
	out[4] &^= byte(http2.FlagHeadersEndHeaders) // same bit in CONTINUATION
	out = append(out, byte(len(h2Rejected)>>16), byte(len(h2Rejected)>>8), byte(len(h2Rejected)),
		byte(http2.FrameContinuation), byte(http2.FlagContinuationEndHeaders))
	out = binary.BigEndian.AppendUint32(out, g.blockStream)
	out = append(out, h2Rejected...)
	g.replace(out)
}

// field checks one decoded field of a client's header block.
func (g *h2Guard) field(f hpack.HeaderField) {
	if connectionSpecific(f.Name, f.Value) {
		g.malformed = true
	}
}

// connectionSpecific reports whether a client's HTTP/2 field makes its
// message malformed by RFC 9113 §8.2.2: a connection-specific field, or
// TE with a value other than "trailers". Names arrive in lower case
// (upper case is the server's to reject).
func connectionSpecific(name, value string) bool {
	switch name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	case "te":
		return !strings.EqualFold(strings.Trim(value, " \t"), "trailers")
	}
	return false
}

// foldSettings returns frame (a SETTINGS frame) rewritten to keep only
// the last value of each identifier it repeats, or nil when it repeats
// none or is malformed (the server's to reject). Settings apply in order,
// so the last value of each is what the frame means.
func foldSettings(frame []byte, flags http2.Flags, stream uint32) []byte {
	p := frame[h2FrameHeaderLen:]
	n := len(p) / h2SettingLen
	if stream != 0 || flags.Has(http2.FlagSettingsAck) || len(p)%h2SettingLen != 0 || n > h2MaxSettings {
		return nil
	}
	id := func(i int) uint16 { return binary.BigEndian.Uint16(p[i*h2SettingLen:]) }
	// n is at most h2MaxSettings, so quadratic is cheaper than a map.
	later := func(i int) bool {
		for j := i + 1; j < n; j++ {
			if id(j) == id(i) {
				return true
			}
		}
		return false
	}
	dup := false
	for i := 0; i < n && !dup; i++ {
		dup = later(i)
	}
	if !dup {
		return nil
	}
	out := make([]byte, h2FrameHeaderLen, len(frame))
	copy(out, frame[:h2FrameHeaderLen])
	for i := range n {
		if !later(i) {
			out = append(out, p[i*h2SettingLen:(i+1)*h2SettingLen]...)
		}
	}
	l := len(out) - h2FrameHeaderLen
	out[0], out[1], out[2] = byte(l>>16), byte(l>>8), byte(l)
	return out
}
