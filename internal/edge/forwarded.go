package edge

import (
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// trustedProxies are the networks whose forwarding headers the edge
// extends instead of replacing.
type trustedProxies []netip.Prefix

func (tp trustedProxies) contains(a netip.Addr) bool {
	for _, p := range tp {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseTrustedProxies parses a comma-separated list of CIDRs or single
// addresses ("10.0.0.0/8,192.0.2.7"), as given to `skiff server
// --trusted-proxies`. The empty string trusts nobody.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if p, err := netip.ParsePrefix(f); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: not a CIDR (10.0.0.0/8) or an address (192.0.2.7)", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// peerAddr returns the address of the direct peer of r.
func peerAddr(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

// setForwarded sets X-Forwarded-For, -Host, -Proto and Forwarded (RFC
// 7239) on out, the request to the upstream, from in, the client's
// request. A peer in trusted is a proxy in front of the edge: its values
// are kept and the edge's hop is appended. Anyone else could have written
// anything, so their values are replaced.
//
// It must run after hop-by-hop headers were removed from out (Rewrite
// runs then), so a client's "Connection: X-Forwarded-For" cannot remove
// what the edge sets.
func setForwarded(out http.Header, in *http.Request, trusted trustedProxies) {
	peer, ok := peerAddr(in)
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	host := in.Host
	elem := forwardedElement(peer, ok, host, proto)
	xff := ""
	if ok {
		xff = peer.String()
	}
	if ok && len(trusted) > 0 && trusted.contains(peer) {
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
			xff = strings.Join(prior, ", ") + ", " + xff
		}
		if prior := in.Header["Forwarded"]; len(prior) > 0 {
			elem = strings.Join(prior, ", ") + ", " + elem
		}
		if h := in.Header.Get("X-Forwarded-Host"); h != "" {
			host = h
		}
		if p := in.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
			proto = p
		}
	}
	if xff != "" {
		out["X-Forwarded-For"] = []string{xff}
	} else {
		delete(out, "X-Forwarded-For")
	}
	out["X-Forwarded-Host"] = []string{host}
	out["X-Forwarded-Proto"] = []string{proto}
	out["Forwarded"] = []string{elem}
}

// forwardedElement is the edge's own element of a Forwarded header:
// for=<client>;host=<host>;proto=<proto>.
func forwardedElement(peer netip.Addr, ok bool, host, proto string) string {
	return string(appendForwardedElement(nil, peer, ok, host, proto))
}

// appendForwardedElement appends forwardedElement's text to b; the
// fasthttp listener builds it in a buffer of its own, without an
// allocation per request.
func appendForwardedElement(b []byte, peer netip.Addr, ok bool, host, proto string) []byte {
	b = append(b, "for="...)
	switch {
	case !ok:
		b = append(b, "unknown"...)
	case peer.Is6():
		b = append(b, `"[`...)
		b = peer.AppendTo(b)
		b = append(b, `]"`...)
	default:
		b = peer.AppendTo(b)
	}
	if host != "" {
		b = append(b, ";host="...)
		b = appendForwardedValue(b, host)
	}
	b = append(b, ";proto="...)
	return append(b, proto...)
}

// appendForwardedValue appends v as an RFC 7230 token when it is one,
// and as a quoted-string otherwise.
func appendForwardedValue(b []byte, v string) []byte {
	token := v != ""
	for i := 0; i < len(v) && token; i++ {
		token = isTokenChar(v[i])
	}
	if token {
		return append(b, v...)
	}
	b = append(b, '"')
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	return append(b, '"')
}

func isTokenChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
