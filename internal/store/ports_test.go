package store

import (
	"context"
	"errors"
	"reflect"
	"testing"
)

// ports creates a release of app forwarding ports, returning its error.
func ports(s *Store, app string, p ...TCPPort) error {
	_, err := s.CreateRelease(context.Background(), NewRelease{
		App: app, SpecFile: "skiff.yaml", Spec: []byte("name: " + app + "\n"), TCP: p,
	})
	return err
}

func TestCreateReleasePortInUse(t *testing.T) {
	whole := TCPPort{Port: 25565}
	db := TCPPort{Port: 5432, SNI: "db.example.com"}
	cases := []struct {
		name  string
		owner []TCPPort // held by app "owner"
		claim []TCPPort // asked for by app "thief"
		want  *PortInUseError
		msg   string
	}{
		{
			name: "whole port taken", owner: []TCPPort{whole}, claim: []TCPPort{{Port: 22}, whole},
			want: &PortInUseError{Port: 25565, App: "owner", Whole: true},
			msg:  `TCP port 25565 is already forwarded to app "owner"`,
		},
		{
			name: "server name on a whole port", owner: []TCPPort{{Port: 5432}}, claim: []TCPPort{db},
			want: &PortInUseError{Port: 5432, SNI: "db.example.com", App: "owner", Whole: true},
			msg:  `TCP port 5432 is already forwarded to app "owner"`,
		},
		{
			name: "whole port shared by names", owner: []TCPPort{db}, claim: []TCPPort{{Port: 5432}},
			want: &PortInUseError{Port: 5432, App: "owner"},
			msg:  `TCP port 5432 is shared by TLS server name with app "owner", so it cannot be forwarded whole`,
		},
		{
			name: "same server name, other case", owner: []TCPPort{db}, claim: []TCPPort{{Port: 5432, SNI: "DB.example.com"}},
			want: &PortInUseError{Port: 5432, SNI: "DB.example.com", App: "owner"},
			msg:  `TLS server name "DB.example.com" on TCP port 5432 is already routed to app "owner"`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			if err := ports(s, "owner", tc.owner...); err != nil {
				t.Fatal(err)
			}
			before := dump(t, s)
			err := ports(s, "thief", tc.claim...)
			var pe *PortInUseError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v, want *PortInUseError", err)
			}
			if !errors.Is(err, ErrPortInUse) {
				t.Error("errors.Is(err, ErrPortInUse) is false")
			}
			if !reflect.DeepEqual(pe, tc.want) {
				t.Errorf("error = %+v, want %+v", pe, tc.want)
			}
			if err.Error() != tc.msg {
				t.Errorf("message = %q, want %q", err.Error(), tc.msg)
			}
			if after := dump(t, s); after != before {
				t.Errorf("a refused release changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

func TestPortsSharedAndMoved(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	a := []TCPPort{{Port: 443, SNI: "a.example.com", Target: 8443}, {Port: 25565, SRV: "minecraft"}}
	if err := ports(s, "a", a...); err != nil {
		t.Fatal(err)
	}
	// Another name on the shared port is free; so is a wildcard.
	b := []TCPPort{{Port: 443, SNI: "b.example.com"}, {Port: 443, SNI: "*.example.com"}}
	if err := ports(s, "b", b...); err != nil {
		t.Fatalf("another server name on a shared port: %v", err)
	}
	// An app's own ports are never in its way.
	if err := ports(s, "a", a...); err != nil {
		t.Fatalf("redeploy with the same ports: %v", err)
	}
	got, err := s.App(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got.TCP, a) {
		t.Errorf("App(a).TCP = %+v, want %+v", got.TCP, a)
	}
	// a gives 25565 up; c may take it.
	if err := ports(s, "a", a[0]); err != nil {
		t.Fatal(err)
	}
	if err := ports(s, "c", TCPPort{Port: 25565}); err != nil {
		t.Fatalf("claiming a released port: %v", err)
	}
	apps, err := s.Apps(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]TCPPort{"a": a[:1], "b": b, "c": {{Port: 25565}}}
	for _, app := range apps {
		if !reflect.DeepEqual(app.TCP, want[app.Name]) {
			t.Errorf("Apps(): %s TCP = %+v, want %+v", app.Name, app.TCP, want[app.Name])
		}
	}
	// Purging an app frees its ports.
	if err := s.MarkDeleting(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.PurgeApp(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	if err := ports(s, "d", TCPPort{Port: 25565}); err != nil {
		t.Fatalf("claiming a purged app's port: %v", err)
	}
}

func TestPortOutOfRange(t *testing.T) {
	s := newStore(t)
	if err := ports(s, "a", TCPPort{Port: 70000}); err == nil || errors.Is(err, ErrPortInUse) {
		t.Fatalf("err = %v, want a refusal of the port", err)
	}
}
