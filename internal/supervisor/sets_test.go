package supervisor

import (
	"slices"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
)

func TestLeavers(t *testing.T) {
	t0 := time.Now()
	mk := func(id string, age int, state instance.State, draining bool) *inst {
		return &inst{id: id, created: t0.Add(-time.Duration(age) * time.Minute), state: state, draining: draining}
	}
	st := &set{insts: map[string]*inst{}}
	for _, in := range []*inst{
		mk("old-ready", 9, instance.Ready, false),
		mk("new-ready", 1, instance.Ready, false),
		mk("old-starting", 8, instance.Starting, false),
		mk("new-crashing", 2, instance.CrashLoop, false),
		mk("old-draining", 10, instance.Ready, true),
	} {
		st.insts[in.id] = in
	}
	var got []string
	for _, in := range leavers(st, 5) {
		got = append(got, in.id)
	}
	want := []string{"old-draining", "new-crashing", "old-starting", "new-ready", "old-ready"}
	if !slices.Equal(got, want) {
		t.Errorf("leaving order = %v, want %v", got, want)
	}
}

func TestBackoff(t *testing.T) {
	s := &Supervisor{opts: Options{BackoffBase: time.Second, BackoffMax: 5 * time.Second}}
	tests := []struct {
		exits int
		want  time.Duration
	}{{0, time.Second}, {1, 2 * time.Second}, {2, 4 * time.Second}, {3, 5 * time.Second}, {60, 5 * time.Second}}
	for _, tt := range tests {
		if got := s.backoff(tt.exits); got != tt.want {
			t.Errorf("backoff(%d) = %s, want %s", tt.exits, got, tt.want)
		}
	}
}

func TestNewIDShape(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		id := newID(setKey{"web", 12}, func(id string) bool { return seen[id] })
		if len(id) != len("web-12-")+5 || id[:7] != "web-12-" {
			t.Fatalf("id %q is not web-12-<5 chars>", id)
		}
		for _, c := range id[7:] {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
				t.Fatalf("id %q has %q", id, c)
			}
		}
		if seen[id] {
			t.Fatalf("id %q given twice", id)
		}
		seen[id] = true
	}
}
