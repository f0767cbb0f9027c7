package edge

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// compileForTest builds a table whose backends are named after their ids,
// so a lookup can be checked by the app and backend it lands on.
func compileForTest(t testing.TB, routes ...Route) *table {
	t.Helper()
	tb, problems := compile(&Snapshot{Generation: 1, Routes: routes}, func(b Backend) *backend {
		return &backend{id: b.ID, addr: b.Addr}
	})
	if len(problems) > 0 {
		t.Fatalf("compile: %v", errors.Join(problems...))
	}
	return tb
}

func TestLookup(t *testing.T) {
	tb := compileForTest(t,
		Route{Host: "hello.localhost", App: "hello"},
		Route{Host: "Hello.localhost", PathPrefix: "/api/", App: "hello-api"},
		Route{Host: "hello.localhost", PathPrefix: "/api/v2", App: "hello-api-v2"},
		Route{Host: "*.apps.example.com", App: "apps"},
		Route{Host: "*.eu.apps.example.com", App: "eu"},
		Route{Host: "special.apps.example.com", App: "special"},
		Route{Host: "only-admin.apps.example.com", PathPrefix: "/admin", App: "admin"},
		Route{Host: "*.example.org", PathPrefix: "/docs", App: "docs"},
	)
	tests := []struct {
		name, host, path, want string // want "" means no route
	}{
		{"exact host", "hello.localhost", "/", "hello"},
		{"exact host any path", "hello.localhost", "/x/y", "hello"},
		{"prefix exact match", "hello.localhost", "/api", "hello-api"},
		{"prefix subtree", "hello.localhost", "/api/users", "hello-api"},
		{"prefix is a whole segment", "hello.localhost", "/apiary", "hello"},
		{"longest prefix wins", "hello.localhost", "/api/v2/users", "hello-api-v2"},
		{"longer prefix needs its segment", "hello.localhost", "/api/v20", "hello-api"},
		{"host case and port ignored", "HELLO.localhost:8080", "/", "hello"},
		{"trailing dot ignored", "hello.localhost.", "/", "hello"},
		{"unknown host", "nope.localhost", "/", ""},
		{"wildcard one label", "a.apps.example.com", "/", "apps"},
		{"wildcard several labels", "a.b.c.apps.example.com", "/", "apps"},
		{"wildcard does not match its suffix", "apps.example.com", "/", ""},
		{"longest wildcard wins", "x.eu.apps.example.com", "/", "eu"},
		{"wildcard suffix itself falls to shorter wildcard", "eu.apps.example.com", "/", "apps"},
		{"exact beats wildcard", "special.apps.example.com", "/", "special"},
		{"exact without matching prefix falls back to wildcard", "only-admin.apps.example.com", "/", "apps"},
		{"exact with matching prefix", "only-admin.apps.example.com", "/admin/x", "admin"},
		{"wildcard with prefix", "a.example.org", "/docs/x", "docs"},
		{"wildcard prefix not matched", "a.example.org", "/", ""},
		{"empty host", "", "/", ""},
		{"dot host", ".", "/", ""},
		{"leading dot host", ".apps.example.com", "/", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rt := tb.lookup(canonicalHost(tc.host), tc.path)
			got := ""
			if rt != nil {
				got = rt.app
			}
			if got != tc.want {
				t.Errorf("lookup(%q, %q) = app %q, want %q", tc.host, tc.path, got, tc.want)
			}
		})
	}
}

func TestCanonicalHost(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"plain", "hello.localhost", "hello.localhost"},
		{"port", "hello.localhost:8080", "hello.localhost"},
		{"upper case", "Hello.LocalHost", "hello.localhost"},
		{"trailing dot and port", "hello.localhost.:80", "hello.localhost"},
		{"ipv4 with port", "127.0.0.1:80", "127.0.0.1"},
		{"ipv6 with port", "[::1]:80", "[::1]"},
		{"ipv6 without port", "[::1]", "[::1]"},
		{"empty", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := canonicalHost(tc.in); got != tc.want {
				t.Errorf("canonicalHost(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestSnapshotValidate(t *testing.T) {
	ok := []Backend{{ID: "i1", Addr: "127.0.0.1:1"}}
	tests := []struct {
		name  string
		route Route
		want  string // a part of the error; "" means valid
	}{
		{"exact", Route{Host: "hello.localhost", App: "a", Backends: ok}, ""},
		{"wildcard", Route{Host: "*.apps.example.com", App: "a", Backends: ok}, ""},
		{"no backends is valid", Route{Host: "hello.localhost", App: "a"}, ""},
		{"empty host", Route{Host: "", App: "a"}, `route 1 (app "a"): host "": invalid route`},
		{"bare star", Route{Host: "*", App: "a"}, `character '*' is not allowed`},
		{"star in the middle", Route{Host: "a.*.example.com", App: "a"}, `character '*' is not allowed`},
		{"wildcard without suffix", Route{Host: "*.", App: "a"}, `character '*' is not allowed`},
		{"host with port", Route{Host: "hello.localhost:80", App: "a"}, `character ':' is not allowed`},
		{"empty label", Route{Host: "hello..localhost", App: "a"}, `empty label`},
		{"relative prefix", Route{Host: "x.localhost", PathPrefix: "api", App: "a"}, `path prefix "api": invalid route: it must start with '/'`},
		{"duplicate host and prefix", Route{Host: "Base.localhost", PathPrefix: "/", App: "a"}, `route 0 already has them`},
		{"backend without address", Route{Host: "x.localhost", App: "a", Backends: []Backend{{ID: "i2"}}}, `backend "i2" at "": invalid route`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := &Snapshot{Routes: []Route{{Host: "base.localhost", App: "base"}, tc.route}}
			err := s.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidRoute) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want ErrInvalidRoute containing %q", err, tc.want)
			}
		})
	}
}

// BenchmarkLookup measures finding a route among 10,000: 9,000 exact
// hosts with a path prefix each, and 1,000 wildcards hit through a
// three-label subdomain.
func BenchmarkLookup(b *testing.B) {
	const n = 10000
	routes := make([]Route, 0, n)
	for i := range n - 1000 {
		routes = append(routes, Route{Host: fmt.Sprintf("app%d.club.example.com", i), App: "a"})
	}
	for i := range 1000 {
		routes = append(routes, Route{Host: fmt.Sprintf("*.t%d.apps.example.com", i), PathPrefix: "/api", App: "w"})
	}
	tb := compileForTest(b, routes...)
	hosts := make([]string, 1024)
	for i := range hosts {
		if i%2 == 0 {
			hosts[i] = fmt.Sprintf("App%d.club.example.com:443", rand.IntN(n-1000))
		} else {
			hosts[i] = fmt.Sprintf("x.y.t%d.apps.example.com", rand.IntN(1000))
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if tb.lookup(canonicalHost(hosts[i%len(hosts)]), "/api/users") == nil {
			b.Fatal("no route")
		}
		i++
	}
}
