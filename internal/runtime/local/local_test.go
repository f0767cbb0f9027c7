package local

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/runtime/docker"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

// fake is a driver that records the calls it gets.
type fake struct {
	name    string
	calls   []string
	recover []supervisor.Handle
	err     error
}

func (f *fake) Capabilities() supervisor.Capabilities {
	return supervisor.Capabilities{Name: f.name, Limits: true}
}
func (f *fake) Start(ctx context.Context, id string, t instance.Template) (supervisor.Handle, error) {
	f.calls = append(f.calls, "start "+id)
	ref := "start:1"
	if f.name == "docker" {
		ref = docker.RefPrefix + "abc"
	}
	return supervisor.Handle{ID: id, Ref: ref}, nil
}
func (f *fake) Wait(ctx context.Context, h supervisor.Handle) (instance.Exit, error) {
	f.calls = append(f.calls, "wait "+h.ID)
	return instance.Exit{}, nil
}
func (f *fake) Stop(ctx context.Context, h supervisor.Handle, grace time.Duration) error {
	f.calls = append(f.calls, "stop "+h.ID)
	return nil
}
func (f *fake) Stats(ctx context.Context, h supervisor.Handle) (supervisor.Stats, error) {
	f.calls = append(f.calls, "stats "+h.ID)
	return supervisor.Stats{}, nil
}
func (f *fake) LogPath(h supervisor.Handle) string { return f.name + "/" + h.ID }
func (f *fake) Recover(ctx context.Context) ([]supervisor.Handle, error) {
	return f.recover, f.err
}
func (f *fake) Cleanup(ctx context.Context, h supervisor.Handle) error {
	f.calls = append(f.calls, "cleanup "+h.ID)
	return nil
}

func TestDispatch(t *testing.T) {
	proc, dock := &fake{name: "process"}, &fake{name: "docker"}
	d, err := New(Options{Process: proc, Docker: dock})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ph, _ := d.Start(ctx, "p", instance.Template{App: "a", Command: []string{"x"}})
	dh, _ := d.Start(ctx, "c", instance.Template{App: "b", Image: "sha256:1", Port: 80})
	for _, h := range []supervisor.Handle{ph, dh} {
		d.Wait(ctx, h)
		d.Stop(ctx, h, 0)
		d.Stats(ctx, h)
		d.Cleanup(ctx, h)
	}
	if got, want := strings.Join(proc.calls, ","), "start p,wait p,stop p,stats p,cleanup p"; got != want {
		t.Errorf("process driver got %s, want %s", got, want)
	}
	if got, want := strings.Join(dock.calls, ","), "start c,wait c,stop c,stats c,cleanup c"; got != want {
		t.Errorf("docker driver got %s, want %s", got, want)
	}
	if d.LogPath(ph) != "process/p" || d.LogPath(dh) != "docker/c" {
		t.Errorf("log paths %s, %s", d.LogPath(ph), d.LogPath(dh))
	}
}

func TestRecoverMerges(t *testing.T) {
	proc := &fake{name: "process", recover: []supervisor.Handle{{ID: "b"}}}
	dock := &fake{name: "docker", recover: []supervisor.Handle{{ID: "a", Ref: docker.RefPrefix + "x"}}}
	d, _ := New(Options{Process: proc, Docker: dock})
	hs, err := d.Recover(context.Background())
	if err != nil || len(hs) != 2 || hs[0].ID != "a" || hs[1].ID != "b" {
		t.Errorf("recover = %+v, %v; want a and b", hs, err)
	}
	// Docker down: process apps are still recovered.
	dock.err = &docker.UnreachableError{Host: "unix:///x", Reason: "down"}
	hs, err = d.Recover(context.Background())
	if err != nil || len(hs) != 1 || hs[0].ID != "b" {
		t.Errorf("recover without docker = %+v, %v; want b alone", hs, err)
	}
	// Any other failure must stop recovery: starting blind could duplicate.
	dock.err = errors.New("boom")
	if _, err := d.Recover(context.Background()); err == nil {
		t.Errorf("recover swallowed a docker failure")
	}
}

func TestWithoutDocker(t *testing.T) {
	proc := &fake{name: "process"}
	d, _ := New(Options{Process: proc})
	_, err := d.Start(context.Background(), "c", instance.Template{Image: "x", Port: 80})
	if !errors.Is(err, ErrNoDocker) {
		t.Errorf("start of a container app = %v, want ErrNoDocker", err)
	}
	if _, err := d.Start(context.Background(), "p", instance.Template{Command: []string{"x"}}); err != nil {
		t.Errorf("a process app must start: %v", err)
	}
}
