package process_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/controller"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/runtime/process"
	"github.com/skiff-sh/skiff/internal/runtimetest"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

// TestConformance runs the runtime suite on the supervisor over the
// process driver.
func TestConformance(t *testing.T) {
	appDir := runtimetest.BuildTestApp(t)
	var mu sync.Mutex
	drivers := map[controller.Runtime]*process.Driver{}
	h := runtimetest.Harness{
		New: func(t *testing.T, dir string) controller.Runtime {
			d := newDriver(t, dir)
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
		},
		Template: func(t *testing.T, app string, release int, env map[string]string) instance.Template {
			return instance.Template{
				App:     app,
				Release: release,
				Command: []string{"./testapp"},
				Dir:     releaseDir(t, appDir, app),
				Env:     env,
				Health: instance.Health{Path: "/healthz", Interval: 50 * time.Millisecond, Timeout: 500 * time.Millisecond,
					Threshold: 3, LivenessThreshold: 6},
			}
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
		Capabilities: supervisor.Capabilities{Name: "process", ExitCodeOnRecover: false},
	}
	runtimetest.Run(t, h)
}

// releaseDir gives each app of each test its own copy of the test app,
// as each release has its own tree, since a driver running as root hands
// the tree over to the app's user.
func releaseDir(t *testing.T, src, app string) string {
	key := t.Name() + "/" + app
	if dir, ok := releaseDirs.Load(key); ok {
		return dir.(string)
	}
	dir, _ := releaseDirs.LoadOrStore(key, runtimetest.ReleaseDir(t, src))
	return dir.(string)
}

var releaseDirs sync.Map

// newDriver returns a driver whose node is private to dir, so tests in
// parallel never see each other's instances, and which kills whatever of
// its node still runs when the test ends.
func newDriver(t *testing.T, dir string) *process.Driver {
	t.Helper()
	sum := sha256.Sum256([]byte(dir))
	d, err := process.New(process.Options{StateDir: dir, NodeID: "test-" + hex.EncodeToString(sum[:6]), Logger: testLogger()})
	if err != nil {
		t.Fatalf("new driver: %v", err)
	}
	t.Cleanup(func() {
		hs, err := d.Recover(context.Background())
		if err != nil {
			t.Errorf("cleanup: recover: %v", err)
		}
		for _, h := range hs {
			_ = d.Stop(context.Background(), h, 0)
		}
	})
	return d
}

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}
