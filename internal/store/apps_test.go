package store

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestApps(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	if apps, err := s.Apps(ctx); err != nil || len(apps) != 0 {
		t.Fatalf("Apps of an empty store = %v, %v", apps, err)
	}
	release(t, s, "zeta", "zeta.example.com")
	release(t, s, "alpha", "alpha.example.com", "a.example.com")
	release(t, s, "mid")

	apps, err := s.Apps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range apps {
		names = append(names, a.Name)
	}
	if !reflect.DeepEqual(names, []string{"alpha", "mid", "zeta"}) {
		t.Errorf("Apps order = %v, want sorted by name", names)
	}
	if !reflect.DeepEqual(apps[0].Hosts, []string{"alpha.example.com", "a.example.com"}) ||
		apps[1].Hosts != nil || !reflect.DeepEqual(apps[2].Hosts, []string{"zeta.example.com"}) {
		t.Errorf("hosts = %v / %v / %v", apps[0].Hosts, apps[1].Hosts, apps[2].Hosts)
	}
	one, err := s.App(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(one, apps[0]) {
		t.Errorf("App(alpha) = %+v, Apps gave %+v", one, apps[0])
	}
	if _, err := s.App(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("App(nope): err = %v, want ErrNotFound", err)
	}
}

func TestScale(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	release(t, s, "a")
	if err := s.Scale(ctx, "a", 4); err != nil {
		t.Fatal(err)
	}
	app, _ := s.App(ctx, "a")
	if app.Replicas != 4 {
		t.Errorf("replicas = %d, want 4", app.Replicas)
	}
	ev, _ := s.Events(ctx, EventQuery{App: "a"})
	last := ev[len(ev)-1]
	if last.Kind != "app.scaled" || last.Message != "scaled from 1 to 4 replicas" ||
		last.Data["from"] != float64(1) || last.Data["to"] != float64(4) {
		t.Errorf("scale event = %+v", last)
	}

	cases := []struct {
		name, app string
		n         int
		is        error
		message   string
	}{
		{name: "missing app", app: "nope", n: 1, is: ErrNotFound},
		{name: "negative", app: "a", n: -1, message: "replicas must be 0 or more"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := s.Scale(ctx, tc.app, tc.n)
			if err == nil || (tc.is != nil && !errors.Is(err, tc.is)) || !strings.Contains(err.Error(), tc.message) {
				t.Errorf("err = %v, want %v containing %q", err, tc.is, tc.message)
			}
		})
	}
	t.Run("app being destroyed", func(t *testing.T) {
		if err := s.MarkDeleting(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if err := s.Scale(ctx, "a", 2); !errors.Is(err, ErrConflict) {
			t.Errorf("err = %v, want ErrConflict", err)
		}
	})
}

func TestMarkDeleting(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	release(t, s, "a")
	for range 2 {
		if err := s.MarkDeleting(ctx, "a"); err != nil {
			t.Fatal(err)
		}
	}
	app, _ := s.App(ctx, "a")
	if !app.Deleting {
		t.Error("app not marked deleting")
	}
	ev, _ := s.Events(ctx, EventQuery{App: "a"})
	var n int
	for _, e := range ev {
		if e.Kind == "app.destroying" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d app.destroying events after marking twice, want 1", n)
	}
	if err := s.MarkDeleting(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("MarkDeleting(nope): err = %v, want ErrNotFound", err)
	}
}

func TestPurgeApp(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	shared, own := digestOf("shared"), digestOf("own")
	for _, nr := range []NewRelease{
		{App: "a", Artifact: own, Hosts: []string{"a.example.com"}},
		{App: "a", Artifact: shared, Hosts: []string{"a.example.com"}},
		{App: "a", Artifact: own, Hosts: []string{"a.example.com"}},
		{App: "a"}, // no artifact
		{App: "b", Artifact: shared},
	} {
		if _, err := s.CreateRelease(ctx, nr); err != nil {
			t.Fatal(err)
		}
	}

	if _, err := s.PurgeApp(ctx, "a"); !errors.Is(err, ErrConflict) {
		t.Fatalf("purging a live app: err = %v, want ErrConflict", err)
	}
	if _, err := s.App(ctx, "a"); err != nil {
		t.Fatalf("a refused purge removed the app: %v", err)
	}

	if err := s.MarkDeleting(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	unused, err := s.PurgeApp(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(unused, []string{own}) {
		t.Errorf("unused digests = %v, want only a's own %v (b still uses the shared one)", unused, own)
	}
	if _, err := s.App(ctx, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("App after purge: err = %v, want ErrNotFound", err)
	}
	if _, err := s.Release(ctx, "a", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Release after purge: err = %v, want ErrNotFound", err)
	}
	// The host is free again.
	if _, err := s.CreateRelease(ctx, NewRelease{App: "c", Hosts: []string{"a.example.com"}}); err != nil {
		t.Errorf("claiming a purged app's host: %v", err)
	}
	// The events stay, ending with the purge.
	ev, _ := s.Events(ctx, EventQuery{App: "a"})
	if len(ev) < 5 || ev[len(ev)-1].Kind != "app.destroyed" {
		t.Errorf("events of the purged app = %+v, want its history ending with app.destroyed", ev)
	}
	// A new app of the same name goes on numbering where the old one
	// stopped, so events naming a release stay unambiguous.
	before, _ := s.Events(ctx, EventQuery{App: "a"})
	highest := 0
	for _, e := range before {
		highest = max(highest, e.Release)
	}
	if r := release(t, s, "a"); r.Number != highest+1 {
		t.Errorf("first release of a re-created app got number %d, want %d", r.Number, highest+1)
	}
	if _, err := s.PurgeApp(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("PurgeApp(nope): err = %v, want ErrNotFound", err)
	}
}
