package controller

import (
	"slices"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/instance"
)

func TestRouteTableReadyOnly(t *testing.T) {
	e := &fakeEdge{log: &journal{}}
	rt := newRouteTable(e)
	in := func(id string, rel int, s instance.State) instance.Instance {
		return instance.Instance{ID: id, App: "hello", Release: rel, Endpoint: "127.0.0.1:1" + id, State: s}
	}
	sets := []instance.Set{
		{App: "hello", Release: 1, Size: 3, Instances: []instance.Instance{
			in("1", 1, instance.Ready), in("2", 1, instance.Draining), in("3", 1, instance.Unready),
		}},
		{App: "hello", Release: 2, Size: 3, Instances: []instance.Instance{
			in("4", 2, instance.Starting), in("5", 2, instance.Ready), in("6", 2, instance.CrashLoop), in("7", 2, instance.Gone),
		}},
	}
	rt.set("hello", routing{hosts: []string{"hello.apps.test", "www.example.com"}}, sets)
	rt.publish()

	s := e.last()
	if s == nil || s.Generation < uint64(time.Now().Add(-time.Minute).UnixNano()) {
		t.Fatalf("snapshot = %+v, want a generation from the clock", s)
	}
	want := []edge.Backend{
		{ID: "1", Addr: "127.0.0.1:11", Release: 1, Weight: 1},
		{ID: "5", Addr: "127.0.0.1:15", Release: 2, Weight: 1},
	}
	if len(s.Routes) != 2 {
		t.Fatalf("routes = %+v, want one per host", s.Routes)
	}
	for i, h := range []string{"hello.apps.test", "www.example.com"} {
		r := s.Routes[i]
		if r.Host != h || r.App != "hello" || r.PathPrefix != "" || !slices.Equal(r.Backends, want) {
			t.Errorf("route %d = %+v, want %s to the ready instances %+v", i, r, h, want)
		}
	}
}

func TestRouteTablePublish(t *testing.T) {
	e := &fakeEdge{log: &journal{}}
	rt := newRouteTable(e)
	ready := func(app, id string) instance.Set {
		return instance.Set{App: app, Release: 1, Size: 1, Instances: []instance.Instance{
			{ID: id, App: app, Release: 1, Endpoint: "127.0.0.1:9", State: instance.Ready},
		}}
	}
	// gens numbers the applied generations from 1: they start from the
	// clock and must rise by one with each change.
	gens := func() []uint64 {
		var out []uint64
		for _, s := range e.applied() {
			out = append(out, s.Generation-e.applied()[0].Generation+1)
		}
		return out
	}
	hosts := func() []string {
		var out []string
		for _, r := range e.last().Routes {
			out = append(out, r.Host)
		}
		return out
	}

	// An empty table is still published once, so the edge knows it.
	rt.publish()
	if got := gens(); !slices.Equal(got, []uint64{1}) || len(e.last().Routes) != 0 {
		t.Fatalf("first publish applied generations %v, want [1] with no routes", got)
	}
	rt.publish()
	if got := gens(); !slices.Equal(got, []uint64{1}) {
		t.Fatalf("publishing the same table applied %v", got)
	}

	rt.set("zeta", routing{hosts: []string{"zeta.apps.test"}}, []instance.Set{ready("zeta", "z1")})
	rt.set("alpha", routing{hosts: []string{"www.alpha.test", "alpha.apps.test"}}, []instance.Set{ready("alpha", "a1")})
	rt.publish()
	if got := gens(); !slices.Equal(got, []uint64{1, 2}) {
		t.Fatalf("generations = %v, want [1 2]", got)
	}
	if got := hosts(); !slices.Equal(got, []string{"alpha.apps.test", "www.alpha.test", "zeta.apps.test"}) {
		t.Errorf("hosts = %v, want every app's, sorted", got)
	}

	// Setting the same observations again changes nothing.
	rt.set("alpha", routing{hosts: []string{"www.alpha.test", "alpha.apps.test"}}, []instance.Set{ready("alpha", "a1")})
	rt.publish()
	if got := gens(); !slices.Equal(got, []uint64{1, 2}) {
		t.Errorf("identical routes applied again: generations %v", got)
	}

	// A draining instance leaves the routes.
	draining := ready("alpha", "a1")
	draining.Instances[0].State = instance.Draining
	rt.set("alpha", routing{hosts: []string{"www.alpha.test", "alpha.apps.test"}}, []instance.Set{draining})
	rt.publish()
	if got := gens(); !slices.Equal(got, []uint64{1, 2, 3}) {
		t.Fatalf("generations = %v, want [1 2 3]", got)
	}
	if b := backends(e.last(), "alpha.apps.test"); len(b) != 0 {
		t.Errorf("alpha routes to %v while its only instance drains", b)
	}
	if b := backends(e.last(), "zeta.apps.test"); !slices.Equal(b, []string{"z1"}) {
		t.Errorf("zeta routes to %v, want z1", b)
	}

	// A removed app's routes go; the rest stay.
	rt.remove("alpha")
	rt.publish()
	if got := gens(); !slices.Equal(got, []uint64{1, 2, 3, 4}) {
		t.Fatalf("generations = %v, want [1 2 3 4]", got)
	}
	if got := hosts(); !slices.Equal(got, []string{"zeta.apps.test"}) {
		t.Errorf("hosts after removing alpha = %v", got)
	}

	// A changed address is a change, though the ids are the same.
	moved := ready("zeta", "z1")
	moved.Instances[0].Endpoint = "127.0.0.1:10"
	rt.set("zeta", routing{hosts: []string{"zeta.apps.test"}}, []instance.Set{moved})
	rt.publish()
	if got := gens(); !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
		t.Errorf("generations = %v after an address change, want a new one", got)
	}
}
