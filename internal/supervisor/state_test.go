package supervisor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
)

func TestStateRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := &Supervisor{path: filepath.Join(dir, stateFileName), sets: map[setKey]*set{}}
	key := setKey{"web", 2}
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	s.sets[key] = &set{
		tmpl: instance.Template{App: "web", Release: 2, Command: []string{"./web"}, Env: map[string]string{"A": "b"},
			Health: instance.Health{Path: "/h", Interval: time.Second}},
		insts: map[string]*inst{
			"web-2-aaaaa": {id: "web-2-aaaaa", key: key, created: at, draining: true, restarts: 4,
				h: Handle{ID: "web-2-aaaaa", App: "web", Release: 2, Endpoint: "127.0.0.1:1", PID: 9, StartedAt: at, Ref: "start:1"}},
			"web-2-bbbbb": {id: "web-2-bbbbb", key: key, created: at},
		},
	}
	if err := s.persist(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("sets.json: %v %v, want mode 0600 (templates carry env)", fi, err)
	}
	got, err := loadState(s.path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Sets) != 1 || got.Sets[0].Size != 2 || got.Sets[0].Template.Env["A"] != "b" ||
		got.Sets[0].Template.Health.Interval != time.Second {
		t.Fatalf("loaded %+v", got)
	}
	a, b := got.Sets[0].Instances[0], got.Sets[0].Instances[1]
	if a.Handle == nil || a.Handle.PID != 9 || !a.Handle.StartedAt.Equal(at) || a.Handle.Ref != "start:1" || !a.Draining || a.Restarts != 4 {
		t.Errorf("instance a = %+v", a)
	}
	if b.Handle != nil || !b.Created.Equal(at) {
		t.Errorf("instance b = %+v, want no handle", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temp files left behind: %v", ents)
	}
}

func TestLoadStateErrors(t *testing.T) {
	tests := []struct {
		name, content, want string
	}{
		{"not json", "{", "move it aside"},
		{"other version", `{"version": 9, "sets": []}`, "version 9"},
		{"set without app", `{"version": 1, "sets": [{"template": {}, "size": 1}]}`, "no app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), stateFileName)
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := loadState(path)
			if !errors.Is(err, ErrBadState) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want ErrBadState mentioning %q", err, tt.want)
			}
		})
	}
	if f, err := loadState(filepath.Join(t.TempDir(), "missing.json")); err != nil || len(f.Sets) != 0 {
		t.Errorf("missing file = %+v, %v; want an empty state", f, err)
	}
}
