package edge

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ErrNoClientHello: a connection on a port routed by server name did not
// start with a TLS ClientHello the edge could read.
var ErrNoClientHello = errors.New("not a TLS ClientHello")

const (
	recordHeaderLen      = 5
	recordTypeHandshake  = 22
	maxRecordLen         = 16384 + 2048 // TLSCiphertext may carry this much
	handshakeClientHello = 1
	// maxHelloLen bounds a ClientHello spread over several records. Real
	// ones are a few hundred bytes, or about 2 KiB with post-quantum key
	// shares.
	maxHelloLen   = 64 << 10
	extServerName = 0
	sniHostName   = 0
)

// readClientHello reads the TLS records that carry a connection's
// ClientHello, without answering it, and returns the bytes read (to be
// replayed to the backend) and the server name asked for, lower case
// without a trailing dot ("" when the hello names none).
func readClientHello(r io.Reader) (raw []byte, serverName string, err error) {
	var msg []byte // the handshake message, reassembled across records
	var hdr [recordHeaderLen]byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return raw, "", fmt.Errorf("read TLS record header: %w", err)
		}
		if hdr[0] != recordTypeHandshake || hdr[1] != 3 {
			return raw, "", fmt.Errorf("%w: record type %d version %d.%d", ErrNoClientHello, hdr[0], hdr[1], hdr[2])
		}
		n := int(binary.BigEndian.Uint16(hdr[3:5]))
		if n == 0 || n > maxRecordLen {
			return raw, "", fmt.Errorf("%w: record length %d", ErrNoClientHello, n)
		}
		if len(msg)+n > maxHelloLen+maxRecordLen {
			return raw, "", fmt.Errorf("%w: longer than %d bytes", ErrNoClientHello, maxHelloLen)
		}
		raw = append(raw, hdr[:]...)
		start := len(raw)
		raw = append(raw, make([]byte, n)...)
		if m, err := io.ReadFull(r, raw[start:]); err != nil {
			return raw[:start+m], "", fmt.Errorf("read TLS record: %w", err)
		}
		msg = append(msg, raw[start:]...)
		if len(msg) < 4 {
			continue
		}
		if msg[0] != handshakeClientHello {
			return raw, "", fmt.Errorf("%w: handshake type %d", ErrNoClientHello, msg[0])
		}
		want := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3]))
		if want > maxHelloLen {
			return raw, "", fmt.Errorf("%w: ClientHello of %d bytes", ErrNoClientHello, want)
		}
		if len(msg) < want {
			continue
		}
		name, err := parseClientHello(msg[4:want])
		return raw, name, err
	}
}

// parseClientHello returns the host name of the server_name extension of
// a ClientHello body (RFC 8446 4.1.2, RFC 6066 3), or "" when it has
// none.
func parseClientHello(b []byte) (string, error) {
	s := helloReader{b: b}
	s.skip(2 + 32)  // legacy_version, random
	s.skip(s.u8())  // legacy_session_id
	s.skip(s.u16()) // cipher_suites
	s.skip(s.u8())  // legacy_compression_methods
	if s.err == nil && len(s.b) == 0 {
		return "", nil // no extensions at all (an old client)
	}
	exts := helloReader{b: s.bytes(s.u16())}
	if s.err != nil {
		return "", s.err
	}
	for len(exts.b) > 0 && exts.err == nil {
		typ := exts.u16()
		data := helloReader{b: exts.bytes(exts.u16())}
		if exts.err != nil || typ != extServerName {
			continue
		}
		list := helloReader{b: data.bytes(data.u16())}
		for len(list.b) > 0 && list.err == nil {
			kind := list.u8()
			name := list.bytes(list.u16())
			if list.err == nil && kind == sniHostName {
				return serverName(name)
			}
		}
		if err := cmpErr(data.err, list.err); err != nil {
			return "", err
		}
		return "", nil
	}
	return "", exts.err
}

// serverName checks and canonicalises a host name from the extension:
// ASCII letters, digits, '-', '_' and dots, as routes are keyed.
func serverName(b []byte) (string, error) {
	if len(b) == 0 || len(b) > 253+1 {
		return "", fmt.Errorf("%w: server name of %d bytes", ErrNoClientHello, len(b))
	}
	for _, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return "", fmt.Errorf("%w: server name has byte %#x", ErrNoClientHello, c)
		}
	}
	return strings.TrimSuffix(strings.ToLower(string(b)), "."), nil
}

func cmpErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// helloReader reads big-endian fields, remembering the first overrun
// instead of panicking.
type helloReader struct {
	b   []byte
	err error
}

var errShortHello = fmt.Errorf("%w: truncated", ErrNoClientHello)

func (r *helloReader) bytes(n int) []byte {
	if r.err != nil || n > len(r.b) {
		r.err = errShortHello
		r.b = nil
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *helloReader) skip(n int) { r.bytes(n) }

func (r *helloReader) u8() int {
	b := r.bytes(1)
	if b == nil {
		return 0
	}
	return int(b[0])
}

func (r *helloReader) u16() int {
	b := r.bytes(2)
	if b == nil {
		return 0
	}
	return int(binary.BigEndian.Uint16(b))
}
