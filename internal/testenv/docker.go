package testenv

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/build"
	"github.com/skiff-sh/skiff/internal/runtime/docker"
	"github.com/skiff-sh/skiff/internal/store"
)

// RequireDocker returns the Docker Engine of DOCKER_HOST or the default
// socket once it answers. When it does not, t is skipped with how to get
// one, or fails under SKIFF_REQUIRE_INTEGRATION=1.
func RequireDocker(t testing.TB) *docker.Engine {
	t.Helper()
	e := docker.NewEngine("")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Ping(ctx); err != nil {
		e.Close()
		msg := fmt.Sprintf("Docker Engine is needed: %v (scripts/test-setup.sh installs and starts it)", err)
		if RequireIntegration() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// StaticBinary builds a Go package (an import path of this module) as a
// static binary at dir/name, fit to run in a FROM scratch image.
func StaticBinary(pkg, dir, name string) error {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go"
	}
	cmd := exec.Command(goTool, "build", "-trimpath", "-o", filepath.Join(dir, name), pkg)
	cmd.Dir = RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build %s: %v\n%s", pkg, err, out)
	}
	return nil
}

// AppDockerfile runs /app from a scratch image; no registry is needed.
const AppDockerfile = "FROM scratch\nCOPY app /app\nENTRYPOINT [\"/app\"]\n"

// AppContext writes a build context for pkg: the static binary "app" and
// AppDockerfile, into a new directory under /tmp, which it returns.
func AppContext(t testing.TB, pkg string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "skiff-image-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := StaticBinary(pkg, dir, "app"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(AppDockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

var (
	imageMu    sync.Mutex
	imageBuilt = map[string]string{}
)

// AppImage builds (once per test process) an image running pkg, tagged
// tag, and returns its ID. Images are left in the engine: the next run
// reuses their layers.
func AppImage(t testing.TB, e *docker.Engine, pkg, tag string) string {
	t.Helper()
	imageMu.Lock()
	defer imageMu.Unlock()
	if id, ok := imageBuilt[tag]; ok {
		return id
	}
	dir, err := os.MkdirTemp("", "skiff-image-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := StaticBinary(pkg, dir, "app"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(AppDockerfile), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id, err := build.New(e, nil).Build(ctx, build.Request{Dir: dir, Tags: []string{tag}}, nil)
	if err != nil {
		t.Fatalf("build image %s: %v", tag, err)
	}
	imageBuilt[tag] = id
	return id
}

// RemoveContainers force-removes every container labelled with
// skiff.node=node: a test's data plane outlives its server, so tests end
// it.
func RemoveContainers(e *docker.Engine, node string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = e.RemoveNode(ctx, node)
}

// ServerNode returns the node ID of the server whose data dir is dataDir
// (what its containers carry as skiff.node), or "" when no server ever
// ran there. Tests that share an engine clean up by node, never by app
// name: other tests may run an app of the same name at the same time.
func ServerNode(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "skiff.db")
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	// The server may still run: SQLite (WAL) lets a second process read.
	st, err := store.Open(path)
	if err != nil {
		return "", err
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, err := st.Meta(ctx, "node_id")
	if errors.Is(err, store.ErrNotFound) {
		return "", nil
	}
	return id, err
}
