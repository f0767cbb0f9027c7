package edge

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// fuzzHosts and fuzzPrefixes are what FuzzLookup builds its small tables
// from: names that overlap as exact hosts, wildcards and suffixes, and
// prefixes that overlap by segment and by mere string prefix.
var (
	fuzzHosts    = []string{"a.example", "b.a.example", "*.example", "*.a.example", "*.b.a.example", "x", "*.x", "A.Example."}
	fuzzPrefixes = []string{"", "/", "/api", "/api/", "/api/v1", "/a", "/apix"}
)

// naiveLookup is lookup written the slow, obvious way: every route is a
// candidate; an exact host beats any wildcard, a longer wildcard suffix a
// shorter one, then the longer path prefix wins.
func naiveLookup(t *table, host, path string) *route {
	var best *route
	bestScore := [3]int{-1}
	consider := func(rs []*route, exact bool, key string) {
		for _, rt := range rs {
			if !(rt.prefix == "/" || path == rt.prefix || strings.HasPrefix(path, rt.prefix+"/")) {
				continue
			}
			score := [3]int{0, len(key), len(rt.prefix)}
			if exact {
				score[0] = 1
			}
			if score[0] > bestScore[0] || score[0] == bestScore[0] && (score[1] > bestScore[1] || score[1] == bestScore[1] && score[2] > bestScore[2]) {
				best, bestScore = rt, score
			}
		}
	}
	for key, rs := range t.exact {
		if key == host {
			consider(rs, true, key)
		}
	}
	for suffix, rs := range t.wildcard {
		if len(host) > len(suffix) && strings.HasSuffix(host, suffix) {
			consider(rs, false, suffix)
		}
	}
	return best
}

func FuzzLookup(f *testing.F) {
	f.Add([]byte{0, 0, 2, 1, 3, 2}, "b.a.example", "/api/v1/x")
	f.Add([]byte{1, 2, 1, 4, 2, 6}, "c.b.a.example:8080", "/apix")
	f.Add([]byte{6, 0, 5, 3}, "X.", "/api")
	f.Add([]byte{2, 0}, ".example", "/")
	f.Add([]byte{}, "", "")
	f.Fuzz(func(t *testing.T, spec []byte, host, path string) {
		var routes []Route
		for i := 0; i+1 < len(spec) && len(routes) < 12; i += 2 {
			routes = append(routes, Route{
				Host:       fuzzHosts[int(spec[i])%len(fuzzHosts)],
				PathPrefix: fuzzPrefixes[int(spec[i+1])%len(fuzzPrefixes)],
				App:        fmt.Sprint("app", i/2),
			})
		}
		tb, _ := compile(&Snapshot{Routes: routes}, func(Backend) *backend { return &backend{} })
		h := canonicalHost(host)
		got, want := tb.lookup(h, path), naiveLookup(tb, h, path)
		if got != want {
			t.Fatalf("lookup(%q, %q) over %v = %v, want %v", h, path, routes, got, want)
		}
	})
}

func FuzzCanonicalHost(f *testing.F) {
	for _, s := range []string{"hello.example.com", "Hello.Example.COM.", "app.localhost:8080", "[::1]:443", "[::1]", "127.0.0.1:80", "a:1:2", "", ":", "é.example", "*.x"} {
		f.Add(s, uint16(8080), true, true)
	}
	f.Fuzz(func(t *testing.T, h string, port uint16, upper, dot bool) {
		got := canonicalHost(h)
		if strings.ContainsFunc(got, func(r rune) bool { return r >= 'A' && r <= 'Z' }) {
			t.Fatalf("canonicalHost(%q) = %q has upper case", h, got)
		}
		// Every way a client may write a route's host reaches that route.
		name, wildcard, err := routeHost(h)
		if err != nil || wildcard {
			return
		}
		req := name
		if upper {
			req = strings.ToUpper(req)
		}
		if dot {
			req += "."
		}
		if port != 0 {
			req += fmt.Sprintf(":%d", port)
		}
		if got := canonicalHost(req); got != name {
			t.Fatalf("canonicalHost(%q) = %q, want the route's host %q", req, got, name)
		}
	})
}

// parseForwardedElement parses one element of a Forwarded header (RFC
// 7239: pairs separated by ';', values tokens or quoted-strings).
func parseForwardedElement(s string) (map[string]string, error) {
	pairs := map[string]string{}
	for s != "" {
		eq := strings.IndexByte(s, '=')
		if eq <= 0 {
			return nil, fmt.Errorf("no name=value at %q", s)
		}
		name := s[:eq]
		s = s[eq+1:]
		var v strings.Builder
		if strings.HasPrefix(s, `"`) {
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' {
					i++
					if i == len(s) {
						return nil, fmt.Errorf("unterminated escape")
					}
				}
				v.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, fmt.Errorf("unterminated quoted-string")
			}
			s = s[i+1:]
		} else {
			i := 0
			for ; i < len(s) && isTokenChar(s[i]); i++ {
				v.WriteByte(s[i])
			}
			if i == 0 {
				return nil, fmt.Errorf("empty value for %s", name)
			}
			s = s[i:]
		}
		if _, dup := pairs[name]; dup {
			return nil, fmt.Errorf("%s twice", name)
		}
		pairs[name] = v.String()
		if s != "" {
			if s[0] != ';' {
				return nil, fmt.Errorf("want ';' at %q", s)
			}
			s = s[1:]
		}
	}
	return pairs, nil
}

func FuzzSetForwarded(f *testing.F) {
	f.Add("192.0.2.7:5000", "app.example", "198.51.100.1", "for=198.51.100.1", "evil.example", "https", false, false)
	f.Add("10.0.0.2:5000", "app.example", "198.51.100.1, 10.0.0.9", `for="[2001:db8::1]";proto=https`, "orig.example", "https", true, false)
	f.Add("[2001:db8::2]:443", "weird \"host\";proto=x", "", "", "", "gopher", false, true)
	f.Add("not an address", "", "1.2.3.4", "for=1.2.3.4", "h", "http", true, true)
	f.Add("10.0.0.3:1", "h:8080", "", "", "", "", true, false)
	trusted := trustedProxies{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	f.Fuzz(func(t *testing.T, remote, host, xff, fwd, xfh, xfp string, useTLS, addConnection bool) {
		in := &http.Request{RemoteAddr: remote, Host: host, Header: http.Header{}}
		for name, v := range map[string]string{"X-Forwarded-For": xff, "Forwarded": fwd, "X-Forwarded-Host": xfh, "X-Forwarded-Proto": xfp} {
			if v != "" {
				in.Header.Set(name, v)
			}
		}
		if addConnection {
			in.Header.Set("Connection", "X-Forwarded-For, Forwarded")
		}
		if useTLS {
			in.TLS = &tls.ConnectionState{}
		}
		out := in.Header.Clone() // what Rewrite starts from
		setForwarded(out, in, trusted)

		peer, ok := peerAddr(in)
		isTrusted := ok && trusted.contains(peer)
		proto := out.Get("X-Forwarded-Proto")
		if proto != "http" && proto != "https" {
			t.Fatalf("X-Forwarded-Proto %q, want http or https", proto)
		}
		if !isTrusted && (proto == "https") != useTLS {
			t.Fatalf("untrusted peer: X-Forwarded-Proto %q with TLS %v", proto, useTLS)
		}
		if !isTrusted && out.Get("X-Forwarded-Host") != host {
			t.Fatalf("untrusted peer: X-Forwarded-Host %q, want the request's Host %q", out.Get("X-Forwarded-Host"), host)
		}
		for _, name := range []string{"X-Forwarded-For", "Forwarded", "X-Forwarded-Host", "X-Forwarded-Proto"} {
			if n := len(out[name]); n > 1 {
				t.Fatalf("%s has %d values, want one", name, n)
			}
		}
		gotXFF := out.Get("X-Forwarded-For")
		switch {
		case !ok && gotXFF != "":
			t.Fatalf("no peer address, X-Forwarded-For %q, want none", gotXFF)
		case ok && !isTrusted && gotXFF != peer.String():
			t.Fatalf("untrusted peer %s: X-Forwarded-For %q, want only the peer", peer, gotXFF)
		case ok && isTrusted && !strings.HasSuffix(gotXFF, peer.String()):
			t.Fatalf("trusted peer %s: X-Forwarded-For %q does not end with it", peer, gotXFF)
		}
		// The edge's own Forwarded element parses and says what the
		// edge saw; from an untrusted peer it is the whole header.
		elem := forwardedElement(peer, ok, host, map[bool]string{false: "http", true: "https"}[useTLS])
		pairs, err := parseForwardedElement(elem)
		if err != nil {
			t.Fatalf("edge's Forwarded element %q does not parse: %v", elem, err)
		}
		wantFor := "unknown"
		if ok {
			wantFor = peer.String()
			if peer.Is6() {
				wantFor = "[" + wantFor + "]"
			}
		}
		if pairs["for"] != wantFor || pairs["proto"] == "" || host != "" && pairs["host"] != host {
			t.Fatalf("edge's Forwarded element %q parses to %v, want for=%s host=%q", elem, pairs, wantFor, host)
		}
		gotFwd := out.Get("Forwarded")
		if !isTrusted && gotFwd != elem {
			t.Fatalf("untrusted peer: Forwarded %q, want only the edge's element %q", gotFwd, elem)
		}
		if isTrusted && !strings.HasSuffix(gotFwd, elem) {
			t.Fatalf("trusted peer: Forwarded %q does not end with the edge's element %q", gotFwd, elem)
		}
	})
}
