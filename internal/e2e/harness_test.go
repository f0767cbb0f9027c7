package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/artifact"
	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/server"
	"github.com/skiff-sh/skiff/internal/testenv"
)

// bins holds the binaries built once for the whole package.
var bins struct {
	skiff   string
	testapp string
}

func TestMain(m *testing.M) {
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "skiff-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		os.Chmod(dir, 0o755)
		bins.skiff = filepath.Join(dir, "skiff")
		bins.testapp = filepath.Join(dir, "testapp")
		root := testenv.RepoRoot()
		for out, pkg := range map[string]string{bins.skiff: "./cmd/skiff", bins.testapp: "./internal/e2e/testapp"} {
			cmd := exec.Command("go", "build", "-o", out, pkg)
			cmd.Dir = root
			if b, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, b)
				return 1
			}
		}
		return m.Run()
	}())
}

// serverProc is one `skiff server` process.
type serverProc struct {
	t        testing.TB
	dataDir  string
	httpAddr string
	apiAddr  string
	args     []string
	cmd      *exec.Cmd
	logFile  *os.File
	client   *client.Client
}

// newServer prepares a server on free ports with its own data dir; start
// runs it.
func newServer(t testing.TB, args ...string) *serverProc {
	s := &serverProc{
		t:        t,
		dataDir:  testenv.DataDir(t),
		httpAddr: "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		apiAddr:  "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t)),
		args:     args,
	}
	c, err := client.New("unix://"+filepath.Join(s.dataDir, server.SocketName), "")
	if err != nil {
		t.Fatal(err)
	}
	s.client = c
	t.Cleanup(func() {
		if s.cmd != nil {
			s.kill()
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(s.dataDir, "server.log"))
			t.Logf("server log:\n%s", b)
		}
	})
	return s
}

// start runs the server and waits until its API answers.
func (s *serverProc) start() {
	s.t.Helper()
	f, err := os.OpenFile(filepath.Join(s.dataDir, "server.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	args := append([]string{"server", "--data-dir", s.dataDir, "--http-addr", s.httpAddr, "--api-addr", s.apiAddr}, s.args...)
	s.cmd = exec.Command(bins.skiff, args...)
	s.cmd.Stdout, s.cmd.Stderr = f, f
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	s.logFile = f
	if err := s.client.WaitHealthy(context.Background(), 30*time.Second); err != nil {
		s.t.Fatalf("server did not come up: %v", err)
	}
}

// kill ends the server with SIGKILL, as a crash would; apps keep running.
func (s *serverProc) kill() {
	s.cmd.Process.Signal(syscall.SIGKILL)
	s.cmd.Wait()
	s.cmd = nil
	s.logFile.Close()
}

// appDir writes an app directory running the test app with spec.
func appDir(t testing.TB, spec string) string {
	dir := t.TempDir()
	b, err := os.ReadFile(bins.testapp)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "testapp"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "skiff.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// bundle is an app directory packed once, so a test can deploy it many
// times quickly.
type bundle struct {
	spec    []byte
	archive []byte
}

// pack reads dir's skiff.yaml and packs the directory.
func pack(t testing.TB, dir string) bundle {
	t.Helper()
	spec, err := os.ReadFile(filepath.Join(dir, "skiff.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := artifact.Pack(&buf, dir, 64<<20); err != nil {
		t.Fatal(err)
	}
	return bundle{spec: spec, archive: buf.Bytes()}
}

// deploy uploads b as a new release.
func deploy(ctx context.Context, c *client.Client, b bundle) (api.Release, error) {
	return c.Deploy(ctx, "skiff.yaml", b.spec, bytes.NewReader(b.archive))
}

// waitStatus waits until release n of app reaches a final status and
// returns it.
func waitStatus(t testing.TB, c *client.Client, app string, n int, timeout time.Duration) api.Release {
	t.Helper()
	var rel api.Release
	eventually(t, timeout, func() error {
		var err error
		rel, err = c.Release(context.Background(), app, n)
		if err != nil {
			return err
		}
		if rel.Status == "pending" {
			return fmt.Errorf("release %d of %s still pending", n, app)
		}
		return nil
	})
	return rel
}

// eventually retries check every 20ms until it passes or timeout ends.
func eventually(t testing.TB, timeout time.Duration, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// converged checks that app runs exactly want ready instances of release
// rel and nothing else.
func converged(c *client.Client, app string, rel, want int) error {
	st, err := c.App(context.Background(), app)
	if err != nil {
		return err
	}
	total := 0
	for _, set := range st.Sets {
		for _, in := range set.Instances {
			total++
			if in.Release != rel || in.State != "ready" {
				return fmt.Errorf("app %s: instance %s of release %d is %s; want release %d ready", app, in.ID, in.Release, in.State, rel)
			}
		}
	}
	if total != want || st.Target != rel || st.Stable != rel {
		return fmt.Errorf("app %s: %d instances, target %d, stable %d; want %d of release %d", app, total, st.Target, st.Stable, want, rel)
	}
	return nil
}
