package controller

import (
	"reflect"
	"testing"

	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/store"
)

func TestRouteTableTCP(t *testing.T) {
	e := &fakeEdge{log: &journal{}}
	rt := newRouteTable(e)
	sets := []instance.Set{{App: "game", Release: 1, Size: 4, Instances: []instance.Instance{
		// A process instance: its one port serves every target.
		{ID: "p", Release: 1, Endpoint: "127.0.0.1:1000", State: instance.Ready},
		// A container publishing its ports.
		{ID: "c", Release: 1, Endpoint: "127.0.0.1:2000", Ports: map[int]string{25565: "127.0.0.1:2001"}, State: instance.Ready},
		// A container that did not publish the target gets no connections to it.
		{ID: "d", Release: 1, Endpoint: "127.0.0.1:3000", Ports: map[int]string{}, State: instance.Ready},
		// Not ready: no traffic.
		{ID: "u", Release: 1, Endpoint: "127.0.0.1:4000", State: instance.Unready},
		{ID: "x", Release: 1, Endpoint: "127.0.0.1:5000", State: instance.Draining},
	}}}
	rt.setPorts("game", []store.TCPPort{
		{Port: 25565, Target: 25565, SRV: "minecraft"},
		{Port: 443, SNI: "game.example.com"},
	})
	rt.set("game", routing{hosts: []string{"game.apps.test"}}, sets)
	rt.publish()

	s := e.last()
	want := []edge.TCPRoute{
		{Port: 443, SNI: "game.example.com", App: "game", Backends: []edge.Backend{
			{ID: "p", Addr: "127.0.0.1:1000", Release: 1, Weight: 1},
			{ID: "c", Addr: "127.0.0.1:2000", Release: 1, Weight: 1},
			{ID: "d", Addr: "127.0.0.1:3000", Release: 1, Weight: 1},
		}},
		{Port: 25565, App: "game", Backends: []edge.Backend{
			{ID: "p", Addr: "127.0.0.1:1000", Release: 1, Weight: 1},
			{ID: "c", Addr: "127.0.0.1:2001", Release: 1, Weight: 1},
		}},
	}
	if s == nil || !reflect.DeepEqual(s.TCP, want) {
		t.Fatalf("TCP routes = %+v\nwant %+v", s, want)
	}
	first := s.Generation
	if err := s.Validate(); err != nil {
		t.Errorf("published snapshot does not validate: %v", err)
	}

	// Nothing changed: nothing published.
	rt.set("game", routing{hosts: []string{"game.apps.test"}}, sets)
	rt.publish()
	if n := len(e.applied()); n != 1 {
		t.Fatalf("%d snapshots after an unchanged set, want 1", n)
	}
	// A port change alone is published.
	rt.setPorts("game", []store.TCPPort{{Port: 25566}})
	rt.set("game", routing{hosts: []string{"game.apps.test"}}, sets)
	rt.publish()
	if s := e.last(); s.Generation != first+1 || len(s.TCP) != 1 || s.TCP[0].Port != 25566 {
		t.Fatalf("after a port change: %+v", s)
	}
	// A removed app loses its ports.
	rt.remove("game")
	rt.publish()
	if s := e.last(); len(s.TCP) != 0 {
		t.Fatalf("TCP routes of a removed app: %+v", s.TCP)
	}
}
