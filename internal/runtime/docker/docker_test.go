package docker_test

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"maps"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/controller"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/runtime/docker"
	"github.com/skiff-sh/skiff/internal/runtimetest"
	"github.com/skiff-sh/skiff/internal/supervisor"
	"github.com/skiff-sh/skiff/internal/testenv"
)

// testAppPkg is the conformance suite's app; its image is built FROM
// scratch, as no registry is reachable.
const testAppPkg = "github.com/skiff-sh/skiff/internal/runtimetest/testapp"

// testImage builds the test app's image once per test binary.
func testImage(t *testing.T, e *docker.Engine) string {
	return testenv.AppImage(t, e, testAppPkg, "skiff-test/testapp:latest")
}

// TestConformance runs the runtime suite on the supervisor over the
// Docker driver.
func TestConformance(t *testing.T) {
	e := testenv.RequireDocker(t)
	image := testImage(t, e)
	var mu sync.Mutex
	drivers := map[controller.Runtime]*docker.Driver{}
	h := runtimetest.Harness{
		New: func(t *testing.T, dir string) controller.Runtime {
			d := newDriver(t, e, dir)
			sup := runtimetest.Supervised(t, d, dir)
			mu.Lock()
			drivers[sup] = d
			mu.Unlock()
			return sup
		},
		Close: func(rt controller.Runtime) {
			if err := rt.(*supervisor.Supervisor).Close(); err != nil {
				t.Errorf("close: %v", err)
			}
			mu.Lock()
			d := drivers[rt]
			mu.Unlock()
			d.Close()
		},
		Template: func(t *testing.T, app string, release int, env map[string]string) instance.Template {
			return appTemplate(image, app, release, env)
		},
		Logs: func(t *testing.T, rt controller.Runtime, id string) string {
			mu.Lock()
			d := drivers[rt]
			mu.Unlock()
			b, err := os.ReadFile(d.LogPath(supervisor.Handle{ID: id}))
			if err != nil {
				t.Fatalf("read log of %s: %v", id, err)
			}
			return string(b)
		},
		Forget:       runtimetest.ForgetSet,
		Capabilities: supervisor.Capabilities{Name: "docker", ExitCodeOnRecover: true, Limits: true},
		// Docker 20.10 took up to 3.4s from create to start (network
		// endpoint, docker-proxy, runc) while other packages' tests used
		// the engine too; skiff's own part of a restart is milliseconds.
		StartLatency: 10 * time.Second,
	}
	runtimetest.Run(t, h)
}

// appTemplate runs the test app listening on all of the container's
// addresses (its port is published from the container's own address).
func appTemplate(image, app string, release int, env map[string]string) instance.Template {
	all := map[string]string{"TESTAPP_HOST": "0.0.0.0"}
	maps.Copy(all, env)
	return instance.Template{
		App:     app,
		Release: release,
		Image:   image,
		Port:    8080,
		Env:     all,
		Health: instance.Health{Path: "/healthz", Interval: 50 * time.Millisecond, Timeout: 500 * time.Millisecond,
			Threshold: 3, LivenessThreshold: 6},
	}
}

// nodeOf gives each state dir a node of its own, so parallel tests never
// see each other's containers.
func nodeOf(dir string) string {
	sum := sha256.Sum256([]byte(dir))
	return "test-" + hex.EncodeToString(sum[:6])
}

// newDriver returns a driver on dir's node whose containers are removed
// when the test ends.
func newDriver(t *testing.T, e *docker.Engine, dir string) *docker.Driver {
	t.Helper()
	node := nodeOf(dir)
	d, err := docker.New(docker.Options{Engine: e, StateDir: dir, NodeID: node, Logger: testLogger()})
	if err != nil {
		t.Fatalf("new driver: %v", err)
	}
	t.Cleanup(func() { testenv.RemoveContainers(e, node) })
	return d
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}
