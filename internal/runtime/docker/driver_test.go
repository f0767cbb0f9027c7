package docker_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/runtime/docker"
	"github.com/skiff-sh/skiff/internal/supervisor"
	"github.com/skiff-sh/skiff/internal/testenv"
)

var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil}}

// call sends a request to an instance and returns the body of a 200.
func call(method, endpoint, path, body string) (string, error) {
	req, err := http.NewRequest(method, "http://"+endpoint+path, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, b)
	}
	return string(b), nil
}

// awaitHTTP waits until the instance answers.
func awaitHTTP(t *testing.T, endpoint string) {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for {
		_, err := call("GET", endpoint, "/", "")
		if err == nil {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s never answered: %v", endpoint, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func awaitLog(t *testing.T, d *docker.Driver, h supervisor.Handle, want string) string {
	t.Helper()
	end := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(d.LogPath(h))
		if strings.Contains(string(b), want) {
			return string(b)
		}
		if time.Now().After(end) {
			t.Fatalf("log never showed %q: %s", want, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func start(t *testing.T, d *docker.Driver, id string, tm instance.Template) supervisor.Handle {
	t.Helper()
	h, err := d.Start(context.Background(), id, tm)
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	awaitHTTP(t, h.Endpoint)
	return h
}

func TestStartContainer(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	image := testImage(t, e)
	d := newDriver(t, e, t.TempDir())
	tm := appTemplate(image, "web", 3, map[string]string{"GREETING": "hi", "SKIFF_INSTANCE": "forged", "PORT": "1"})
	tm.Resources = instance.Resources{CPU: 0.5, MemoryBytes: 64 << 20}
	h := start(t, d, "web-3-aaaaa", tm)
	if !strings.HasPrefix(h.Endpoint, "127.0.0.1:") || h.PID <= 0 || h.StartedAt.IsZero() || !docker.IsHandle(h) {
		t.Errorf("handle = %+v, want a loopback endpoint, a pid, a start time and a container ref", h)
	}
	if h.ID != "web-3-aaaaa" || h.App != "web" || h.Release != 3 {
		t.Errorf("handle = %+v", h)
	}
	if body, err := call("GET", h.Endpoint, "/", ""); err != nil || strings.TrimSpace(body) != "web-3-aaaaa 3" {
		t.Errorf("GET / = %q, %v; want the instance's own id (skiff's env wins)", body, err)
	}
	awaitLog(t, d, h, "started web-3-aaaaa\n")
	st, err := d.Stats(context.Background(), h)
	if err != nil || st.MemoryBytes <= 0 {
		t.Errorf("stats = %+v, %v; want some memory", st, err)
	}
	// A second Start of a running instance adopts its container.
	again, err := d.Start(context.Background(), "web-3-aaaaa", tm)
	if err != nil || again.Ref != h.Ref || again.Endpoint != h.Endpoint {
		t.Errorf("second start = %+v, %v; want the same container %s", again, err, h.Ref)
	}
	if err := d.Stop(context.Background(), h, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	exit, err := d.Wait(context.Background(), h)
	if err != nil || exit.Code != 0 || exit.OOM {
		t.Errorf("exit after stop = %+v, %v; want code 0", exit, err)
	}
	awaitLog(t, d, h, "got SIGTERM")
	if err := d.Cleanup(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if err := d.Stop(context.Background(), h, time.Second); err != nil {
		t.Errorf("stopping a removed instance: %v, want nil", err)
	}
	if _, err := d.Stats(context.Background(), h); !errors.Is(err, docker.ErrGone) {
		t.Errorf("stats of a removed instance: %v, want ErrGone", err)
	}
	exit, err = d.Wait(context.Background(), h)
	if err != nil || exit.Code != -1 {
		t.Errorf("wait on a removed instance = %+v, %v; want an unknown exit at once", exit, err)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	image := testImage(t, e)
	d := newDriver(t, e, t.TempDir())
	noPort := appTemplate(image, "web", 1, nil)
	noPort.Port = 0
	missing := appTemplate("skiff-test/no-such-image:never", "web", 1, nil)
	tests := []struct {
		name string
		tm   instance.Template
		is   error
		want string
	}{
		{"no image", instance.Template{App: "web", Release: 1, Port: 80}, docker.ErrBadTemplate, "has no image"},
		{"no port", noPort, docker.ErrBadTemplate, "a container needs a port to be routed"},
		{"image not found", missing, docker.ErrBadTemplate, "image skiff-test/no-such-image:never not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := d.Start(context.Background(), "web-1-bad", tt.tm)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %v saying %q", err, tt.is, tt.want)
			}
		})
	}
}

func TestUnreachableEngine(t *testing.T) {
	t.Parallel()
	e := docker.NewEngine("unix:///nonexistent/docker.sock")
	d, err := docker.New(docker.Options{Engine: e, StateDir: t.TempDir(), NodeID: "n"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Start(context.Background(), "web-1-aaaaa", instance.Template{App: "web", Release: 1, Image: "x", Port: 80})
	var ue *docker.UnreachableError
	if !errors.As(err, &ue) || !errors.Is(err, docker.ErrUnreachable) {
		t.Fatalf("err = %v, want an UnreachableError", err)
	}
	for _, w := range []string{"Docker Engine is not reachable at unix:///nonexistent/docker.sock (", "apt-get install docker.io", "DOCKER_HOST"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if _, err := d.Recover(context.Background()); !errors.Is(err, docker.ErrUnreachable) {
		t.Errorf("recover = %v, want ErrUnreachable", err)
	}
}

func TestOOMKill(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	image := testImage(t, e)
	d := newDriver(t, e, t.TempDir())
	tm := appTemplate(image, "hog", 1, nil)
	tm.Resources.MemoryBytes = 32 << 20
	h := start(t, d, "hog-1-aaaaa", tm)
	go call("GET", h.Endpoint, "/alloc?mb=128", "")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exit, err := d.Wait(ctx, h)
	if err != nil {
		t.Fatal(err)
	}
	if !exit.OOM || exit.Code != 137 {
		t.Errorf("exit = %+v, want killed for its memory (OOM, code 137)", exit)
	}
	awaitLog(t, d, h, "allocating 128 MiB")
}

// TestKillIsNotOOM: a container killed with SIGKILL while another one is
// killed for its memory is reported as killed (137), not as an OOM kill.
// Wait asks the engine's event log about OOM kills (Docker 20.10 can
// leave a container's own OOM flag unset), so it must ask only about the
// container it waits for.
func TestKillIsNotOOM(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	image := testImage(t, e)
	d := newDriver(t, e, t.TempDir())
	hogT := appTemplate(image, "hog2", 1, nil)
	hogT.Resources.MemoryBytes = 32 << 20
	hog := start(t, d, "hog2-1-aaaaa", hogT)
	victim := start(t, d, "victim-1-aaaaa", appTemplate(image, "victim", 1, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	go call("GET", hog.Endpoint, "/alloc?mb=128", "")
	if exit, err := d.Wait(ctx, hog); err != nil || !exit.OOM || exit.Code != 137 {
		t.Fatalf("hog exit = %+v, %v; want an OOM kill (137)", exit, err)
	}
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d: %v", victim.PID, err)
	}
	exit, err := d.Wait(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	if exit.OOM || exit.Code != 137 {
		t.Errorf("victim exit = %+v, want killed (137) and not for its memory", exit)
	}
}

// TestCanceledStartLeavesNoContainer: a Start whose caller gives up (a
// supervisor closing) leaves no container behind, not even one the engine
// finished creating after the caller hung up, which nobody would remove.
func TestCanceledStartLeavesNoContainer(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	image := testImage(t, e)
	d := newDriver(t, e, t.TempDir())
	cli, err := e.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	canceled := 0
	for i, after := range []time.Duration{10, 40, 100} {
		id := fmt.Sprintf("gone-1-%05d", i)
		ctx, cancel := context.WithTimeout(context.Background(), after*time.Millisecond)
		_, startErr := d.Start(ctx, id, appTemplate(image, "gone", 1, nil))
		cancel()
		if startErr == nil {
			continue // it started in time; the node's cleanup removes it
		}
		canceled++
		// A create the engine finishes late shows up within moments.
		for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			res, err := cli.ContainerList(context.Background(), client.ContainerListOptions{All: true,
				Filters: make(client.Filters).Add("label", docker.LabelInstance+"="+id)})
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Items) > 0 {
				t.Fatalf("Start of %s gave up after %dms (%v) but left container %s (%s)", id, after, startErr, res.Items[0].ID[:12], res.Items[0].State)
			}
		}
	}
	if canceled == 0 {
		t.Skip("every Start beat its deadline; nothing was canceled")
	}
}

func TestVolumesKeptAcrossReleases(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	image := testImage(t, e)
	app := "vol" + nodeOf(t.Name())[5:12]
	hardened := func(release int) instance.Template {
		tm := appTemplate(image, app, release, nil)
		tm.Volumes = []instance.Volume{{Name: "data", Path: "/data"}}
		tm.ReadOnly = true
		tm.CapDrop = []string{"ALL"}
		return tm
	}
	// Registered first, so it runs after the containers are removed.
	t.Cleanup(func() { removeVolume(t, e, docker.VolumeName(app, "data")) })
	d := newDriver(t, e, t.TempDir())

	h1 := start(t, d, app+"-1-aaaaa", hardened(1))
	if _, err := call("PUT", h1.Endpoint, "/file?path=/data/note", "kept"); err != nil {
		t.Fatalf("write to the volume: %v", err)
	}
	// The root filesystem is read-only; the volume is not.
	if _, err := call("PUT", h1.Endpoint, "/file?path=/note", "lost"); err == nil {
		t.Errorf("wrote to a read-only root filesystem")
	}
	if err := d.Stop(context.Background(), h1, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := d.Cleanup(context.Background(), h1); err != nil {
		t.Fatal(err)
	}
	h2 := start(t, d, app+"-2-bbbbb", hardened(2))
	if body, err := call("GET", h2.Endpoint, "/file?path=/data/note", ""); err != nil || body != "kept" {
		t.Errorf("release 2 reads %q, %v from the volume; want what release 1 wrote", body, err)
	}
}

func removeVolume(t *testing.T, e *docker.Engine, name string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.RemoveVolume(ctx, name); err != nil {
		t.Errorf("remove volume %s: %v", name, err)
	}
}

func TestAppsReachEachOtherByName(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	image := testImage(t, e)
	d := newDriver(t, e, t.TempDir())
	// Unique names: the network is shared with every other test.
	suffix := nodeOf(t.Name())[5:12]
	backend, front := "back"+suffix, "front"+suffix
	start(t, d, backend+"-1-aaaaa", appTemplate(image, backend, 1, nil))
	f := start(t, d, front+"-1-bbbbb", appTemplate(image, front, 1, nil))
	u := "http://" + backend + ":8080/"
	end := time.Now().Add(15 * time.Second)
	for {
		body, err := call("GET", f.Endpoint, "/fetch?url="+url.QueryEscape(u), "")
		if err == nil && strings.TrimSpace(body) == backend+"-1-aaaaa 1" {
			return
		}
		if time.Now().After(end) {
			t.Fatalf("%s could not reach %s by name: %q, %v", front, u, body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestLogsResumeAfterRestart: a new driver (skiff restarted) adopts a
// running container and copies what it wrote while no driver watched,
// without losing a line.
func TestLogsResumeAfterRestart(t *testing.T) {
	t.Parallel()
	e := testenv.RequireDocker(t)
	image := testImage(t, e)
	dir := t.TempDir()
	d1 := newDriver(t, e, dir)
	h := start(t, d1, "logs-1-aaaaa", appTemplate(image, "logs", 1, nil))
	awaitLog(t, d1, h, "started")
	// skiff stops: the copy stops with it; the container runs on and
	// writes while no one copies.
	d1.Close()
	if _, err := call("GET", h.Endpoint, "/sick", ""); err != nil {
		t.Fatal(err)
	}
	d2 := newDriver(t, e, dir)
	hs, err := d2.Recover(context.Background())
	if err != nil || len(hs) != 1 || hs[0].Ref != h.Ref || !hs[0].StartedAt.Equal(h.StartedAt) || hs[0].Endpoint != h.Endpoint {
		t.Fatalf("recovered %+v, %v; want %+v", hs, err, h)
	}
	logs := awaitLog(t, d2, h, "now sick\n")
	if n := strings.Count(logs, "started logs-1-aaaaa\n"); n != 1 {
		t.Errorf("the start line appears %d times, want once: %q", n, logs)
	}
	// Its exit, too, is copied and reported with its code.
	go call("GET", h.Endpoint, "/exit?code=4", "")
	exit, err := d2.Wait(context.Background(), hs[0])
	if err != nil || exit.Code != 4 {
		t.Errorf("exit = %+v, %v; want code 4", exit, err)
	}
	awaitLog(t, d2, h, "exiting with code 4")
}
