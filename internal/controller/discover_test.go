package controller

import (
	"slices"
	"testing"

	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/store"
)

// A published set is discovered on every route that serves its release,
// with the instances the control plane does not route excluded; a
// starting one is left to the list, which shows it once ready.
func TestRoutesDiscoverPublishedSets(t *testing.T) {
	e := &fakeEdge{log: &journal{}}
	rt := newRouteTable(e)
	in := func(id string, rel int, s instance.State) instance.Instance {
		return instance.Instance{ID: id, App: "web", Release: rel, Endpoint: "10.0.0.1:8080", State: s}
	}
	sets := []instance.Set{
		{App: "web", Release: 1, Size: 4, Published: &instance.Published{Service: "skiff-web-1", Port: 8080}, Instances: []instance.Instance{
			in("web-1-a", 1, instance.Ready), in("web-1-d", 1, instance.Draining), in("web-1-c", 1, instance.CrashLoop), in("web-1-b", 1, instance.Unready),
		}},
		{App: "web", Release: 2, Size: 1, Published: &instance.Published{Service: "skiff-web-2", Port: 8080}, Instances: []instance.Instance{
			in("web-2-s", 2, instance.Starting),
		}},
		// Not published: nothing to discover.
		{App: "web", Release: 3, Size: 1, Instances: []instance.Instance{in("web-3-a", 3, instance.Ready)}},
	}
	rt.setPorts("web", []store.TCPPort{{Port: 2222, Target: 22}})
	rt.set("web", routing{hosts: []string{"web.test"}, weights: map[int]int{1: 10000, 2: 0}, preview: map[string]int{"2.web.test": 2}, h2c: true}, sets)
	rt.publish()
	s := e.last()

	one := edge.Discovery{Release: 1, Service: "skiff-web-1", Port: 8080, H2C: true, Exclude: []string{"web-1-b", "web-1-c", "web-1-d"}}
	two := edge.Discovery{Release: 2, Service: "skiff-web-2", Port: 8080, H2C: true}
	byHost := map[string][]edge.Discovery{}
	for _, r := range s.Routes {
		byHost[r.Host] = r.Discover
	}
	if got := byHost["web.test"]; !slices.EqualFunc(got, []edge.Discovery{one, two}, sameDiscovery) {
		t.Errorf("web.test discovers %+v, want %+v and %+v", got, one, two)
	}
	if got := byHost["2.web.test"]; !slices.EqualFunc(got, []edge.Discovery{two}, sameDiscovery) {
		t.Errorf("the preview host discovers %+v, want release 2 alone", got)
	}
	// TCP: the target port, plain connections, and no release without a
	// share.
	tcpOne := one
	tcpOne.Port, tcpOne.H2C = 22, false
	if len(s.TCP) != 1 || !slices.EqualFunc(s.TCP[0].Discover, []edge.Discovery{tcpOne}, sameDiscovery) {
		t.Errorf("tcp routes %+v, want port 2222 discovering %+v alone", s.TCP, tcpOne)
	}

	// A change of exclusions alone is a new snapshot.
	gen := s.Generation
	sets[1].Instances[0].State = instance.Unready
	rt.refresh("web", sets)
	rt.publish()
	if e.last().Generation == gen {
		t.Error("a pod newly unready (no backend before or after) did not publish a new snapshot")
	}
}
