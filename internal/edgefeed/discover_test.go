package edgefeed

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"

	"github.com/skiff-sh/skiff/internal/edge"
)

// listing is a Finder over a map the test sets: the cluster side is
// tested against a real API server in internal/endpointslices.
type listing struct {
	mu  sync.Mutex
	eps map[string][]Endpoint
}

func (l *listing) set(service string, eps ...Endpoint) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.eps == nil {
		l.eps = map[string][]Endpoint{}
	}
	l.eps[service] = eps
}

func (l *listing) Ready(service string) ([]Endpoint, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	eps, ok := l.eps[service]
	return slices.Clone(eps), ok
}

func ids(bs []edge.Backend) []string {
	var out []string
	for _, b := range bs {
		out = append(out, fmt.Sprintf("%s@%s r%d", b.ID, b.Addr, b.Release))
	}
	return out
}

func TestResolve(t *testing.T) {
	old := edge.Backend{ID: "web-1-a", Addr: "10.0.0.1:8080", Release: 1, Weight: 1}
	stale := edge.Backend{ID: "web-2-gone", Addr: "10.0.0.9:8080", Release: 2, Weight: 1}
	disc := edge.Discovery{Release: 2, Service: "skiff-web-2", Port: 8080, Exclude: []string{"web-2-draining"}}
	l := &listing{}
	l.set("skiff-web-2",
		Endpoint{ID: "web-2-b", IP: "10.0.0.2"},
		Endpoint{ID: "web-2-draining", IP: "10.0.0.3"},
		Endpoint{ID: "web-2-v6", IP: "fd00::4"})
	for _, tc := range []struct {
		name string
		in   edge.Route
		want []string
	}{
		{"listed release replaced, others kept, exclusions left out",
			edge.Route{Host: "web", Backends: []edge.Backend{old, stale}, Discover: []edge.Discovery{disc}},
			[]string{"web-1-a@10.0.0.1:8080 r1", "web-2-b@10.0.0.2:8080 r2", "web-2-v6@[fd00::4]:8080 r2"}},
		{"nothing listed: the control plane's backends stand",
			edge.Route{Host: "web", Backends: []edge.Backend{old, stale}, Discover: []edge.Discovery{{Release: 2, Service: "skiff-web-unknown", Port: 8080}}},
			[]string{"web-1-a@10.0.0.1:8080 r1", "web-2-gone@10.0.0.9:8080 r2"}},
		{"no discovery: untouched",
			edge.Route{Host: "web", Backends: []edge.Backend{old, stale}},
			[]string{"web-1-a@10.0.0.1:8080 r1", "web-2-gone@10.0.0.9:8080 r2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &edge.Snapshot{Generation: 5, Routes: []edge.Route{tc.in},
				TCP: []edge.TCPRoute{{Port: 2222, Backends: tc.in.Backends, Discover: tc.in.Discover}}}
			before := ids(s.Routes[0].Backends)
			got := Resolve(s, l)
			if got.Generation != 5 {
				t.Errorf("generation %d, want 5", got.Generation)
			}
			if g := ids(got.Routes[0].Backends); !slices.Equal(g, tc.want) {
				t.Errorf("HTTP backends %v, want %v", g, tc.want)
			}
			if g := ids(got.TCP[0].Backends); !slices.Equal(g, tc.want) {
				t.Errorf("TCP backends %v, want %v", g, tc.want)
			}
			if after := ids(s.Routes[0].Backends); !slices.Equal(before, after) {
				t.Errorf("Resolve changed its input: %v became %v", before, after)
			}
		})
	}
}

// named answers with its name, on ip and port (0: any).
func named(t *testing.T, name, ip string, port int) (*httptest.Server, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, nil
}

// twoPods starts stand-ins for two pods on one port at 127.0.0.1 and
// 127.0.0.2, as pods of a release listen on one port at their own IPs.
func twoPods(t *testing.T) (port int) {
	for range 20 {
		a, err := named(t, "pod-a", "127.0.0.1", 0)
		if err != nil {
			t.Fatal(err)
		}
		port = a.Listener.Addr().(*net.TCPAddr).Port
		if _, err := named(t, "pod-b", "127.0.0.2", port); err == nil {
			return port
		}
		a.Close()
	}
	t.Fatal("no port free on both 127.0.0.1 and 127.0.0.2")
	return 0
}

func answer(t *testing.T, e *edge.Edge) string {
	t.Helper()
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, httptest.NewRequest("GET", "http://web.localhost/", nil))
	if rec.Code != http.StatusOK {
		return strconv.Itoa(rec.Code)
	}
	return rec.Body.String()
}

// Discovering serves what the list says at the control plane's
// generation, again on every refresh, and never an older snapshot.
func TestDiscoveringFollowsTheList(t *testing.T) {
	port := twoPods(t)
	e := edge.New(edge.Options{Logger: quiet})
	defer e.Close()
	l := &listing{}
	l.set("skiff-web-1", Endpoint{ID: "web-1-a", IP: "127.0.0.1"})
	d := NewDiscovering(e, l)

	// The control plane knows only pod-b, which the list no longer has.
	d.Apply(&edge.Snapshot{Generation: 10, Routes: []edge.Route{{
		Host: "web.localhost", App: "web",
		Backends: []edge.Backend{{ID: "web-1-b", Addr: "127.0.0.2:" + strconv.Itoa(port), Release: 1}},
		Discover: []edge.Discovery{{Release: 1, Service: "skiff-web-1", Port: port}},
	}}})
	for range 10 {
		if got := answer(t, e); got != "pod-a" {
			t.Fatalf("answered by %q, want pod-a (the listed pod)", got)
		}
	}

	// The list changes: b is ready, a is gone. Same generation served.
	l.set("skiff-web-1", Endpoint{ID: "web-1-b", IP: "127.0.0.2"})
	d.Refresh()
	if e.Generation() != 10 {
		t.Errorf("after a refresh the edge serves generation %d, want 10", e.Generation())
	}
	for range 10 {
		if got := answer(t, e); got != "pod-b" {
			t.Fatalf("answered by %q after the list changed, want pod-b", got)
		}
	}

	// The control plane excludes b (draining); a is listed again.
	l.set("skiff-web-1", Endpoint{ID: "web-1-a", IP: "127.0.0.1"}, Endpoint{ID: "web-1-b", IP: "127.0.0.2"})
	d.Apply(&edge.Snapshot{Generation: 11, Routes: []edge.Route{{
		Host: "web.localhost", App: "web",
		Discover: []edge.Discovery{{Release: 1, Service: "skiff-web-1", Port: port, Exclude: []string{"web-1-b"}}},
	}}})
	for range 10 {
		if got := answer(t, e); got != "pod-a" {
			t.Fatalf("answered by %q, want pod-a (pod-b is excluded)", got)
		}
	}

	// An older snapshot arriving late changes nothing, refreshes included.
	d.Apply(&edge.Snapshot{Generation: 9})
	d.Refresh()
	if e.Generation() != 11 || answer(t, e) != "pod-a" {
		t.Errorf("after a late older snapshot: generation %d, answer %q; want 11 and pod-a", e.Generation(), answer(t, e))
	}
}
