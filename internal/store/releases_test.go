package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func intp(n int) *int { return &n }

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// release creates a release of app with the given hosts, failing the test
// on error.
func release(t *testing.T, s *Store, app string, hosts ...string) Release {
	t.Helper()
	r, err := s.CreateRelease(context.Background(), NewRelease{
		App: app, SpecFile: "skiff.yaml", Spec: []byte("name: " + app + "\n"),
		Artifact: digestOf(app), Hosts: hosts,
	})
	if err != nil {
		t.Fatalf("CreateRelease(%s): %v", app, err)
	}
	return r
}

// dump renders every row of every table, to prove a failed call changed
// nothing at all.
func dump(t *testing.T, s *Store) string {
	t.Helper()
	var b strings.Builder
	for _, table := range []string{"apps", "releases", "hosts", "tcp_ports", "events", "meta", "sqlite_sequence"} {
		rows, err := s.r.Query("SELECT * FROM " + table + " ORDER BY rowid")
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "%s %v\n", table, vals)
		}
		rows.Close()
	}
	return b.String()
}

func TestCreateReleaseNewApp(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	rel, err := s.CreateRelease(ctx, NewRelease{
		App: "hello", SpecFile: "skiff.yaml", Spec: []byte("name: hello\n"),
		Artifact: digestOf("a"), Hosts: []string{"hello.example.com", "www.example.com", "HELLO.example.com"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if rel.Number != 1 || rel.Status != StatusPending || rel.CreatedAt.IsZero() || !rel.FinishedAt.IsZero() {
		t.Errorf("release = %+v, want number 1, pending, created, not finished", rel)
	}
	got, err := s.Release(ctx, "hello", 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rel) {
		t.Errorf("stored release\n%+v\ndiffers from the returned one\n%+v", got, rel)
	}

	app, err := s.App(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	wantHosts := []string{"hello.example.com", "www.example.com"} // duplicate dropped, case-insensitively
	if app.Replicas != 1 || app.Target != 1 || app.Stable != 0 || app.Deleting ||
		!reflect.DeepEqual(app.Hosts, wantHosts) || app.CreatedAt.IsZero() {
		t.Errorf("app = %+v, want replicas 1, target 1, stable 0, hosts %v", app, wantHosts)
	}

	events, err := s.Events(ctx, EventQuery{App: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Kind != "release.created" || events[0].Release != 1 ||
		events[0].Message != "release 1 created" {
		t.Errorf("events = %+v, want one release.created for release 1", events)
	}
}

func TestCreateReleaseReplicas(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	steps := []struct {
		name     string
		replicas *int
		want     int
	}{
		{"new app without replicas starts at 1", nil, 1},
		{"spec sets replicas", intp(3), 3},
		{"spec without replicas keeps them", nil, 3},
		{"spec sets zero", intp(0), 0},
	}
	for _, st := range steps {
		rel, err := s.CreateRelease(ctx, NewRelease{App: "a", SpecFile: "skiff.yaml", Spec: []byte("x"), Replicas: st.replicas})
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if !reflect.DeepEqual(rel.Replicas, st.replicas) {
			t.Errorf("%s: release replicas = %v, want %v", st.name, rel.Replicas, st.replicas)
		}
		app, err := s.App(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		if app.Replicas != st.want {
			t.Errorf("%s: app replicas = %d, want %d", st.name, app.Replicas, st.want)
		}
	}
	if err := s.Scale(ctx, "a", 5); err != nil {
		t.Fatal(err)
	}
	release(t, s, "a")
	if app, _ := s.App(ctx, "a"); app.Replicas != 5 {
		t.Errorf("after scale and deploy without replicas: app replicas = %d, want 5 (scaling survives deploys)", app.Replicas)
	}
}

func TestReleaseNumberingAndRollback(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		if r := release(t, s, "a"); r.Number != i {
			t.Fatalf("release %d got number %d", i, r.Number)
		}
	}
	rb, err := s.CreateRelease(ctx, NewRelease{App: "a", SpecFile: "skiff.yaml", Spec: []byte("old"), RollbackOf: 2})
	if err != nil {
		t.Fatal(err)
	}
	if rb.Number != 4 || rb.RollbackOf != 2 || rb.Message != "rollback of release 2" {
		t.Errorf("rollback release = %+v, want number 4, rollback of 2", rb)
	}
	if r := release(t, s, "a"); r.Number != 5 {
		t.Errorf("release after rollback got number %d, want 5", r.Number)
	}
	// Numbers stay per app.
	if r := release(t, s, "b"); r.Number != 1 {
		t.Errorf("first release of another app got number %d, want 1", r.Number)
	}

	rels, err := s.Releases(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	var numbers []int
	for _, r := range rels {
		numbers = append(numbers, r.Number)
	}
	if !reflect.DeepEqual(numbers, []int{5, 4, 3, 2, 1}) {
		t.Errorf("Releases order = %v, want newest first", numbers)
	}

	ev, err := s.Events(ctx, EventQuery{App: "a", Release: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(ev) != 1 || ev[0].Message != "release 4 created as a rollback of release 2; it supersedes release 3" ||
		ev[0].Data["rollback_of"] != float64(2) {
		t.Errorf("rollback event = %+v", ev)
	}
}

func TestCreateReleaseSupersedesPending(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	release(t, s, "a")
	if err := s.FinishRelease(ctx, "a", 1, StatusComplete, "ok"); err != nil {
		t.Fatal(err)
	}
	release(t, s, "a")
	release(t, s, "a")

	r1, _ := s.Release(ctx, "a", 1)
	r2, _ := s.Release(ctx, "a", 2)
	r3, _ := s.Release(ctx, "a", 3)
	if r1.Status != StatusComplete {
		t.Errorf("finished release 1 changed to %q", r1.Status)
	}
	if r2.Status != StatusSuperseded || r2.Message != "superseded by release 3" || r2.FinishedAt.IsZero() {
		t.Errorf("release 2 = %+v, want superseded by release 3 with a finish time", r2)
	}
	if r3.Status != StatusPending {
		t.Errorf("release 3 status = %q, want pending", r3.Status)
	}
	app, _ := s.App(ctx, "a")
	if app.Target != 3 || app.Stable != 1 {
		t.Errorf("app target/stable = %d/%d, want 3/1", app.Target, app.Stable)
	}
}

func TestCreateReleaseHostInUse(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, s *Store) // besides app "owner" holding owner.example.com
		app   string
		hosts []string
		want  string // the taken host reported
		owner string // and the app holding it
	}{
		{
			name:  "new app claims a taken host",
			app:   "thief",
			hosts: []string{"thief.example.com", "owner.example.com"},
			want:  "owner.example.com",
			owner: "owner",
		},
		{
			name:  "existing app claims a taken host",
			setup: func(t *testing.T, s *Store) { release(t, s, "thief", "thief.example.com") },
			app:   "thief",
			hosts: []string{"thief.example.com", "new.example.com", "owner.example.com"},
			want:  "owner.example.com",
			owner: "owner",
		},
		{
			name:  "host names compare without case",
			app:   "thief",
			hosts: []string{"Owner.Example.COM"},
			want:  "Owner.Example.COM",
			owner: "owner",
		},
		{
			name: "first taken host is reported",
			setup: func(t *testing.T, s *Store) {
				release(t, s, "other", "other.example.com")
			},
			app:   "thief",
			hosts: []string{"free.example.com", "other.example.com", "owner.example.com"},
			want:  "other.example.com",
			owner: "other",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			release(t, s, "owner", "owner.example.com")
			if tc.setup != nil {
				tc.setup(t, s)
			}
			before := dump(t, s)
			ch, cancel := s.Subscribe()
			defer cancel()

			_, err := s.CreateRelease(context.Background(), NewRelease{
				App: tc.app, SpecFile: "skiff.yaml", Spec: []byte("x"), Hosts: tc.hosts, Replicas: intp(7),
			})
			var hue *HostInUseError
			if !errors.As(err, &hue) {
				t.Fatalf("err = %v, want *HostInUseError", err)
			}
			if !errors.Is(err, ErrHostInUse) {
				t.Error("errors.Is(err, ErrHostInUse) is false")
			}
			wantOwner := tc.owner
			if hue.Host != tc.want || hue.App != wantOwner {
				t.Errorf("HostInUseError = %+v, want host %q app %q", hue, tc.want, wantOwner)
			}
			if msg := fmt.Sprintf("host %q is already used by app %q", tc.want, wantOwner); err.Error() != msg {
				t.Errorf("message = %q, want %q", err.Error(), msg)
			}
			if after := dump(t, s); after != before {
				t.Errorf("a refused release changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
			}
			select {
			case <-ch:
				t.Error("a refused release woke subscribers")
			default:
			}
		})
	}
}

func TestHostMovesBetweenApps(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	release(t, s, "a", "a.example.com", "shared.example.com")
	release(t, s, "a", "a.example.com") // a gives the host up
	if _, err := s.CreateRelease(ctx, NewRelease{App: "b", Spec: []byte("x"), Hosts: []string{"shared.example.com"}}); err != nil {
		t.Fatalf("claiming a released host: %v", err)
	}
	a, _ := s.App(ctx, "a")
	b, _ := s.App(ctx, "b")
	if !reflect.DeepEqual(a.Hosts, []string{"a.example.com"}) || !reflect.DeepEqual(b.Hosts, []string{"shared.example.com"}) {
		t.Errorf("hosts: a %v, b %v", a.Hosts, b.Hosts)
	}
}

func TestCreateReleaseRefused(t *testing.T) {
	cases := []struct {
		name    string
		setup   func(t *testing.T, s *Store)
		nr      NewRelease
		is      error  // sentinel the error wraps, if any
		message string // text the error holds
	}{
		{
			name: "app being destroyed",
			setup: func(t *testing.T, s *Store) {
				release(t, s, "a")
				if err := s.MarkDeleting(context.Background(), "a"); err != nil {
					t.Fatal(err)
				}
			},
			nr:      NewRelease{App: "a", Spec: []byte("x")},
			is:      ErrConflict,
			message: "app \"a\" is being destroyed; try again when `skiff apps` no longer lists it",
		},
		{
			name:    "rollback of a missing release",
			setup:   func(t *testing.T, s *Store) { release(t, s, "a") },
			nr:      NewRelease{App: "a", Spec: []byte("x"), RollbackOf: 9},
			is:      ErrNotFound,
			message: "release 9",
		},
		{
			name:    "rollback on a new app",
			nr:      NewRelease{App: "new", Spec: []byte("x"), RollbackOf: 1},
			is:      ErrNotFound,
			message: "release 1",
		},
		{name: "empty app name", nr: NewRelease{Spec: []byte("x")}, message: "app name is empty"},
		{name: "negative replicas", nr: NewRelease{App: "a", Replicas: intp(-1)}, message: "replicas must be 0 or more"},
		{name: "artifact not a digest", nr: NewRelease{App: "a", Artifact: "../etc"}, message: "not a sha256 hex digest"},
		{name: "empty host", nr: NewRelease{App: "a", Hosts: []string{""}}, message: "empty host name"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			if tc.setup != nil {
				tc.setup(t, s)
			}
			before := dump(t, s)
			_, err := s.CreateRelease(context.Background(), tc.nr)
			if err == nil {
				t.Fatal("CreateRelease succeeded")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("err = %v, want it to wrap %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("err = %q, want it to contain %q", err, tc.message)
			}
			if after := dump(t, s); after != before {
				t.Errorf("a refused release changed the store:\nbefore:\n%s\nafter:\n%s", before, after)
			}
		})
	}
}

func TestFinishRelease(t *testing.T) {
	type state struct{ target, stable int }
	cases := []struct {
		name string
		// setup leaves app "a" in some state and returns the release to finish.
		setup       func(t *testing.T, s *Store) int
		status, msg string
		wantStatus  string // status of the release afterwards
		wantMsg     string
		want        state
		wantEvent   string // kind of the event appended, "" for none
	}{
		{
			name:       "complete makes the release stable",
			setup:      func(t *testing.T, s *Store) int { return release(t, s, "a").Number },
			status:     StatusComplete,
			msg:        "deployed",
			wantStatus: StatusComplete, wantMsg: "deployed",
			want:      state{target: 1, stable: 1},
			wantEvent: "release.complete",
		},
		{
			name: "failure hands the target back to the stable release",
			setup: func(t *testing.T, s *Store) int {
				release(t, s, "a")
				mustFinish(t, s, 1, StatusComplete)
				return release(t, s, "a").Number
			},
			status:     StatusFailed,
			msg:        "instances did not become ready in 60s",
			wantStatus: StatusFailed, wantMsg: "instances did not become ready in 60s",
			want:      state{target: 1, stable: 1},
			wantEvent: "release.failed",
		},
		{
			name:       "failure of the first release leaves no target",
			setup:      func(t *testing.T, s *Store) int { return release(t, s, "a").Number },
			status:     StatusFailed,
			msg:        "boom",
			wantStatus: StatusFailed, wantMsg: "boom",
			want:      state{target: 0, stable: 0},
			wantEvent: "release.failed",
		},
		{
			name: "superseded release is left alone",
			setup: func(t *testing.T, s *Store) int {
				release(t, s, "a")
				release(t, s, "a")
				return 1
			},
			status:     StatusComplete,
			msg:        "late",
			wantStatus: StatusSuperseded, wantMsg: "superseded by release 2",
			want: state{target: 2, stable: 0},
		},
		{
			name: "finishing twice keeps the first outcome",
			setup: func(t *testing.T, s *Store) int {
				release(t, s, "a")
				mustFinish(t, s, 1, StatusComplete)
				return 1
			},
			status:     StatusFailed,
			msg:        "late failure",
			wantStatus: StatusComplete, wantMsg: "done",
			want: state{target: 1, stable: 1},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStore(t)
			ctx := context.Background()
			n := tc.setup(t, s)
			last := lastEventID(t, s)

			if err := s.FinishRelease(ctx, "a", n, tc.status, tc.msg); err != nil {
				t.Fatalf("FinishRelease: %v", err)
			}
			rel, err := s.Release(ctx, "a", n)
			if err != nil {
				t.Fatal(err)
			}
			if rel.Status != tc.wantStatus || rel.Message != tc.wantMsg || rel.FinishedAt.IsZero() {
				t.Errorf("release = %q %q finished %v, want %q %q with a finish time",
					rel.Status, rel.Message, rel.FinishedAt, tc.wantStatus, tc.wantMsg)
			}
			app, _ := s.App(ctx, "a")
			if got := (state{app.Target, app.Stable}); got != tc.want {
				t.Errorf("app target/stable = %+v, want %+v", got, tc.want)
			}
			events, err := s.Events(ctx, EventQuery{After: last})
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.wantEvent == "" && len(events) != 0:
				t.Errorf("a no-op finish appended events %+v", events)
			case tc.wantEvent != "" && (len(events) != 1 || events[0].Kind != tc.wantEvent ||
				events[0].Message != tc.msg || events[0].Release != n):
				t.Errorf("events = %+v, want one %s for release %d with message %q", events, tc.wantEvent, n, tc.msg)
			}
		})
	}
}

func mustFinish(t *testing.T, s *Store, n int, status string) {
	t.Helper()
	if err := s.FinishRelease(context.Background(), "a", n, status, "done"); err != nil {
		t.Fatal(err)
	}
}

func lastEventID(t *testing.T, s *Store) int64 {
	t.Helper()
	events, err := s.Events(context.Background(), EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(events) == 0 {
		return 0
	}
	return events[len(events)-1].ID
}

func TestFinishReleaseRefused(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	release(t, s, "a")
	if err := s.FinishRelease(ctx, "a", 1, StatusSuperseded, ""); err == nil || !strings.Contains(err.Error(), "status must be") {
		t.Errorf("finishing as superseded: err = %v, want a status error", err)
	}
	if err := s.FinishRelease(ctx, "a", 2, StatusComplete, ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("finishing a missing release: err = %v, want ErrNotFound", err)
	}
	if r, _ := s.Release(ctx, "a", 1); r.Status != StatusPending {
		t.Errorf("refused finishes changed release 1 to %q", r.Status)
	}
}

func TestReleaseNotFound(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	release(t, s, "a")
	if _, err := s.Release(ctx, "a", 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("Release(a, 2): err = %v, want ErrNotFound", err)
	}
	if _, err := s.Release(ctx, "b", 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Release(b, 1): err = %v, want ErrNotFound", err)
	}
	if _, err := s.Releases(ctx, "b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Releases(b): err = %v, want ErrNotFound", err)
	}
}
