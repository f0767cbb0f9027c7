package edge

import (
	"bufio"
	"bytes"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// FuzzParseRequest checks the raw engine's head parser against net/http:
// a head it accepts, net/http reads too, with the same method, target
// and Host; and the head the edge sends upstream for it is one net/http
// reads, with the client's forwarding headers replaced, nothing a
// Connection field named, and the edge's request id.
func FuzzParseRequest(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n",
		"GET /a/b?c=d HTTP/1.1\r\nHost: App.Test:8080\r\nUser-Agent: x\r\nAccept: */*\r\n\r\n",
		"HEAD /x HTTP/1.1\r\nHost: a\r\nConnection: close, X-Secret\r\nX-Secret: 1\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX-Request-Id: abc-123\r\nCookie: skiff_app=42; other=1\r\nX-Skiff-Release: 3\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
		"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n",
		"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: [::1]:80\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n := headEnd(data)
		if n < 0 {
			return
		}
		var r rawRequest
		if parseRequest(data[:n], &r) != nil {
			return
		}
		req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data[:n])))
		if err != nil {
			t.Fatalf("the raw parser accepts %q, net/http does not: %v", data[:n], err)
		}
		if req.Method != string(r.method) || req.RequestURI != string(r.target) || req.Host != string(r.host) {
			t.Fatalf("%q: raw parser read %s %s host %q, net/http %s %s host %q", data[:n], r.method, r.target, r.host, req.Method, req.RequestURI, req.Host)
		}
		if req.ContentLength > 0 || len(req.TransferEncoding) > 0 {
			t.Fatalf("%q: the raw parser accepts a request with a body", data[:n])
		}
		x := &rawExchange{req: r, host: string(r.host), id: "edge-id", peer: netip.MustParseAddr("192.0.2.1"), peerOK: true}
		up, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(x.appendUpstreamHead(nil))))
		if err != nil {
			t.Fatalf("%q: upstream head unreadable: %v", data[:n], err)
		}
		if got := up.Header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "192.0.2.1" {
			t.Fatalf("%q: upstream X-Forwarded-For %q", data[:n], got)
		}
		if got := up.Header.Values(requestIDHeader); len(got) != 1 || got[0] != "edge-id" {
			t.Fatalf("%q: upstream X-Request-Id %q", data[:n], got)
		}
		for _, v := range req.Header.Values("Connection") {
			for name := range strings.SplitSeq(v, ",") {
				name = strings.TrimSpace(name)
				if name == "" || requestDropped.bits([]byte(name)) != 0 {
					continue
				}
				if _, ok := up.Header[http.CanonicalHeaderKey(name)]; ok {
					t.Fatalf("%q: upstream head keeps %q, which Connection names", data[:n], name)
				}
			}
		}
		if up.Host != req.Host || up.RequestURI != req.RequestURI {
			t.Fatalf("%q: upstream %s host %q, want %s host %q", data[:n], up.RequestURI, up.Host, req.RequestURI, req.Host)
		}
	})
}
