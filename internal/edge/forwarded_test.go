package edge

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// TestForwardingHeaders sends requests through a real edge and checks
// what the app sees, from an untrusted and from a trusted peer, including
// clients that name the edge's headers in Connection to have them
// stripped (CVE-2021-33197, CVE-2021-32813).
func TestForwardingHeaders(t *testing.T) {
	clientSent := http.Header{
		"X-Forwarded-For":   {"203.0.113.9"},
		"X-Forwarded-Host":  {"evil.example"},
		"X-Forwarded-Proto": {"https"},
		"Forwarded":         {"for=203.0.113.9;proto=https"},
	}
	hopByHop := http.Header{
		"Connection":      {"X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, Forwarded, X-Request-Id"},
		"X-Forwarded-For": {"203.0.113.9"},
	}
	edgeOwn := map[string]string{
		"X-Forwarded-For":   "127.0.0.1",
		"X-Forwarded-Host":  "app.localhost:8443",
		"X-Forwarded-Proto": "http",
		"Forwarded":         `for=127.0.0.1;host="app.localhost:8443";proto=http`,
	}
	tests := []struct {
		name    string
		trusted string
		sent    http.Header
		want    map[string]string
	}{
		{"untrusted client without headers", "", nil, edgeOwn},
		{"untrusted client's headers replaced", "", clientSent, edgeOwn},
		{"peer outside the trusted networks replaced", "10.0.0.0/8,192.0.2.1", clientSent, edgeOwn},
		{"Connection cannot strip the edge's headers", "", hopByHop, edgeOwn},
		{"Connection from a trusted peer cannot strip them either", "127.0.0.0/8", hopByHop, map[string]string{
			"X-Forwarded-For":   "203.0.113.9, 127.0.0.1",
			"X-Forwarded-Host":  "app.localhost:8443",
			"X-Forwarded-Proto": "http",
			"Forwarded":         `for=127.0.0.1;host="app.localhost:8443";proto=http`,
		}},
		{"trusted proxy's headers extended", "127.0.0.0/8", clientSent, map[string]string{
			"X-Forwarded-For":   "203.0.113.9, 127.0.0.1",
			"X-Forwarded-Host":  "evil.example",
			"X-Forwarded-Proto": "https",
			"Forwarded":         `for=203.0.113.9;proto=https, for=127.0.0.1;host="app.localhost:8443";proto=http`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			trusted, err := ParseTrustedProxies(tc.trusted)
			if err != nil {
				t.Fatal(err)
			}
			te := newTestEdge(t, Options{TrustedProxies: trusted})
			seen := make(chan http.Header, 1)
			be := newBackendFunc(t, "b", func(w http.ResponseWriter, r *http.Request) {
				seen <- r.Header.Clone()
			})
			te.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{be}}}})
			res, _ := te.do(t, http.MethodGet, "app.localhost:8443", "/", nil, tc.sent)
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d, want 200", res.StatusCode)
			}
			h := <-seen
			for k, v := range tc.want {
				if got := strings.Join(h.Values(k), ", "); got != v {
					t.Errorf("app saw %s = %q, want %q", k, got, v)
				}
			}
			if id := h.Get(requestIDHeader); !validRequestID(id) || id != res.Header.Get(requestIDHeader) {
				t.Errorf("app saw X-Request-Id %q, client got %q: want the same valid id", id, res.Header.Get(requestIDHeader))
			}
		})
	}
}

func TestParseTrustedProxies(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr bool
	}{
		{"empty", "", nil, false},
		{"cidrs and addresses", "10.0.0.0/8, 192.0.2.7,2001:db8::/32", []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"}, false},
		{"host bits masked", "10.1.2.3/8", []string{"10.0.0.0/8"}, false},
		{"garbage", "10.0.0.0/8,proxy.example", nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTrustedProxies(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error %v", err, tc.wantErr)
			}
			if tc.wantErr {
				if !strings.Contains(err.Error(), "proxy.example") {
					t.Fatalf("error %q does not name the bad entry", err)
				}
				return
			}
			var s []string
			for _, p := range got {
				s = append(s, p.String())
			}
			if strings.Join(s, " ") != strings.Join(tc.want, " ") {
				t.Fatalf("got %v, want %v", s, tc.want)
			}
		})
	}
}

func TestForwardedElement(t *testing.T) {
	tests := []struct {
		name, peer, host, proto, want string
	}{
		{"ipv4 and token host", "192.0.2.1", "example.com", "https", "for=192.0.2.1;host=example.com;proto=https"},
		{"ipv6 quoted", "2001:db8::1", "example.com", "http", `for="[2001:db8::1]";host=example.com;proto=http`},
		{"host with port quoted", "192.0.2.1", "example.com:8080", "http", `for=192.0.2.1;host="example.com:8080";proto=http`},
		{"quote escaped", "192.0.2.1", `a"b`, "http", `for=192.0.2.1;host="a\"b";proto=http`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := forwardedElement(netip.MustParseAddr(tc.peer), true, tc.host, tc.proto); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}
