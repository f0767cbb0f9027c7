package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/runtime/docker"
	"github.com/skiff-sh/skiff/internal/testenv"
)

var (
	staticOnce sync.Once
	staticDir  string
	staticErr  error
)

// staticTestapp builds the e2e test app as a static binary, fit for a
// FROM scratch image, once per test process.
func staticTestapp(t testing.TB) string {
	staticOnce.Do(func() {
		staticDir, staticErr = os.MkdirTemp("", "skiff-e2e-static-")
		if staticErr == nil {
			staticErr = testenv.StaticBinary("./internal/e2e/testapp", staticDir, "app")
		}
	})
	if staticErr != nil {
		t.Fatal(staticErr)
	}
	return filepath.Join(staticDir, "app")
}

// dockerAppDir writes an app directory that builds the test app into an
// image with dockerfile (its binary is "app"), with spec.
func dockerAppDir(t testing.TB, spec, dockerfile string) string {
	dir := t.TempDir()
	b, err := os.ReadFile(staticTestapp(t))
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{"app": b, "Dockerfile": []byte(dockerfile), "skiff.yaml": []byte(spec)} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// dockerServer starts a server that runs container apps; their containers
// are removed when the test ends.
func dockerServer(t *testing.T, app string, args ...string) (*serverProc, *docker.Engine) {
	e := testenv.RequireDocker(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		e.RemoveLabelled(ctx, docker.LabelApp+"="+app)
	})
	s := newServer(t, args...)
	s.start()
	return s, e
}

// buildEvents returns the release.build messages of release n.
func buildEvents(t testing.TB, c *client.Client, app string, n int) []string {
	var out []string
	err := c.Events(context.Background(), client.EventQuery{App: app, Release: n}, func(e api.Event) error {
		if e.Kind == "release.build" {
			out = append(out, e.Message)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDockerBuildAndPinning deploys a container app built on the server
// from a Dockerfile, checks the build output reached the event log, then
// moves the image's tag to other bits and rolls back: the rollback runs
// the bits release 1 was built from, not what the tag names now.
func TestDockerBuildAndPinning(t *testing.T) {
	app := "dpin" + strings.ToLower(strings.ReplaceAll(fmt.Sprint(time.Now().UnixNano()%1e6), "-", ""))
	s, e := dockerServer(t, app)
	spec := fmt.Sprintf(`name: %s
build: .
port: 8080
env: {LISTEN_HOST: 0.0.0.0, GREETING: one}
health: {path: /healthz, interval: 200ms, timeout: 200ms}
`, app)
	dir := dockerAppDir(t, spec, "FROM scratch\nCOPY app /app\nLABEL bits=one\nENTRYPOINT [\"/app\"]\n")
	ctx := context.Background()
	rel1, err := deploy(ctx, s.client, pack(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if r := waitStatus(t, s.client, app, rel1.Number, 120*time.Second); r.Status != "complete" {
		t.Fatalf("deploy: %s: %s", r.Status, r.Message)
	}
	lines := buildEvents(t, s.client, app, rel1.Number)
	if !strings.Contains(strings.Join(lines, "\n"), "COPY app /app") {
		t.Errorf("build output is not in the event log: %q", lines)
	}
	rels, err := s.client.Releases(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	body, err := get(http.DefaultClient, s.httpAddr, app+".localhost")
	if err != nil || !strings.HasPrefix(body, fmt.Sprintf("release %d ", rel1.Number)) {
		t.Fatalf("GET through the edge = %q, %v", body, err)
	}
	_ = rels

	// Release 2: other bits (a changed Dockerfile), same tag scheme.
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY app /app\nLABEL bits=two\nENTRYPOINT [\"/app\"]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel2, err := deploy(ctx, s.client, pack(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if r := waitStatus(t, s.client, app, rel2.Number, 120*time.Second); r.Status != "complete" {
		t.Fatalf("deploy 2: %s: %s", r.Status, r.Message)
	}
	// Move release 1's tag onto release 2's image.
	cli, err := e.Client(ctx)
	if err != nil {
		t.Fatal(err)
	}
	img1, err := cli.ImageInspect(ctx, fmt.Sprintf("skiff/%s:%d", app, rel1.Number))
	if err != nil {
		t.Fatal(err)
	}
	img2, err := cli.ImageInspect(ctx, fmt.Sprintf("skiff/%s:%d", app, rel2.Number))
	if err != nil {
		t.Fatal(err)
	}
	if img1.ID == img2.ID {
		t.Fatalf("the two builds made one image %s", img1.ID)
	}
	if _, err := cli.ImageTag(ctx, clientTag(fmt.Sprintf("skiff/%s:%d", app, rel2.Number), fmt.Sprintf("skiff/%s:%d", app, rel1.Number))); err != nil {
		t.Fatal(err)
	}
	back, err := s.client.Rollback(ctx, app, rel1.Number)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitStatus(t, s.client, app, back.Number, 60*time.Second); r.Status != "complete" {
		t.Fatalf("rollback: %s: %s", r.Status, r.Message)
	}
	st, err := s.client.App(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cli.ContainerList(ctx, containerListByApp(app))
	if err != nil {
		t.Fatal(err)
	}
	running := 0
	for _, c := range res.Items {
		if c.State != "running" {
			continue
		}
		running++
		if c.ImageID != img1.ID {
			t.Errorf("after the rollback container %s runs image %s, want release 1's %s (the tag now names %s)", c.ID[:12], c.ImageID, img1.ID, img2.ID)
		}
	}
	if running == 0 {
		t.Errorf("no container runs after the rollback: %+v", st)
	}
}

// TestDockerBuildFailure: a failing Dockerfile fails the release with the
// tail of the build output, and the app keeps what it had (nothing).
func TestDockerBuildFailure(t *testing.T) {
	app := "dfail" + fmt.Sprint(time.Now().UnixNano()%1e6)
	s, _ := dockerServer(t, app)
	dir := dockerAppDir(t, fmt.Sprintf("name: %s\nbuild: .\nport: 8080\n", app), "FROM scratch\nCOPY missing-file /x\n")
	rel, err := deploy(context.Background(), s.client, pack(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	r := waitStatus(t, s.client, app, rel.Number, 60*time.Second)
	if r.Status != "failed" || !strings.Contains(r.Message, "image build failed") || !strings.Contains(r.Message, "missing-file") {
		t.Errorf("release = %s: %s; want failed with the build's last lines", r.Status, r.Message)
	}
}

// TestDockerAdoptAfterKill: kill -9 of the server under load; the same
// containers (same IDs, same start times) serve again after the restart,
// and no request fails beyond the restart window of the edge itself.
//
// That window runs from the kill to the moment the restarted server
// answers its health check: the server opens the edge's listener only
// after it has routed the adopted containers, and before the API socket
// the health check uses, so from then on the kernel queues every new
// connection for an edge that can route it. A request that began before
// then may fail (refused while nothing listened, or cut by the kill);
// one that began after must not: no margin is needed, and the health
// check is seen no earlier than it answers, which only widens the window
// a little on the lenient side.
func TestDockerAdoptAfterKill(t *testing.T) {
	app := "dadopt" + fmt.Sprint(time.Now().UnixNano()%1e6)
	s, _ := dockerServer(t, app)
	dir := dockerAppDir(t, fmt.Sprintf(`name: %s
build: .
port: 8080
replicas: 2
env: {LISTEN_HOST: 0.0.0.0}
health: {path: /healthz, interval: 200ms, timeout: 200ms}
`, app), testenv.AppDockerfile)
	ctx := context.Background()
	rel, err := deploy(ctx, s.client, pack(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if r := waitStatus(t, s.client, app, rel.Number, 120*time.Second); r.Status != "complete" {
		t.Fatalf("deploy: %s: %s", r.Status, r.Message)
	}
	before := instancesByID(t, s.client, app)
	load := startLoad(s.httpAddr, app+".localhost", 4, 60*time.Second)
	// Some load before the kill, which must all succeed.
	awaitRequests(t, load, 50)
	killed := time.Now()
	s.kill()
	s.start()
	healthy := time.Now()
	eventually(t, 15*time.Second, func() error {
		if err := converged(s.client, app, rel.Number, 2); err != nil {
			return err
		}
		after, err := observe(s.client, app)
		if err != nil {
			return err
		}
		for id, in := range before {
			got, ok := after[id]
			if !ok || got.PID != in.PID || !got.StartedAt.Equal(in.StartedAt) || got.Endpoint != in.Endpoint || got.Restarts != in.Restarts {
				return fmt.Errorf("instance %s: before %+v, after %+v", id, in, got)
			}
		}
		return nil
	})
	// Load on the restarted edge: a few hundred requests after it was back.
	awaitRequests(t, load, load.ok.Load()+300)
	res := load.stop()
	window := healthy.Sub(killed)
	t.Logf("edge back %s after the kill; %d requests ok, %d failed", window, res.ok, len(res.failures))
	inWindow := 0
	for i, f := range res.failed {
		switch {
		case f.end.Before(killed):
			t.Errorf("a request failed before the kill: %s", res.failures[i])
		case !f.start.Before(healthy):
			t.Errorf("a request that began %s after the restarted server answered its health check failed: %s",
				f.start.Sub(healthy).Round(time.Millisecond), res.failures[i])
		default:
			inWindow++
		}
	}
	t.Logf("%d failures within the restart window", inWindow)
	// The issue promises the edge back within a second; a loaded test
	// machine gets five before this is called a regression.
	if window > 5*time.Second {
		t.Errorf("the edge was away %s after the kill, want about a second", window)
	}
}

// awaitRequests waits until the load has had n successful requests.
func awaitRequests(t *testing.T, l *load, n int64) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		if got := l.ok.Load(); got < n {
			return fmt.Errorf("%d requests succeeded, waiting for %d", got, n)
		}
		return nil
	})
}

// TestDockerZeroLostRequests is TestZeroLostRequests on containers.
func TestDockerZeroLostRequests(t *testing.T) {
	app := "dsteady" + fmt.Sprint(time.Now().UnixNano()%1e6)
	s, _ := dockerServer(t, app)
	dir := dockerAppDir(t, fmt.Sprintf(`name: %s
image: %s
port: 8080
replicas: 2
env: {HOLD: 100ms, LISTEN_HOST: 0.0.0.0}
health: {path: /healthz, interval: 200ms, timeout: 200ms}
`, app, "skiff-test/e2e-testapp:latest"), testenv.AppDockerfile)
	e := testenv.RequireDocker(t)
	ctxDir := t.TempDir()
	b, _ := os.ReadFile(filepath.Join(dir, "app"))
	os.WriteFile(filepath.Join(ctxDir, "app"), b, 0o755)
	os.WriteFile(filepath.Join(ctxDir, "Dockerfile"), []byte(testenv.AppDockerfile), 0o644)
	buildImage(t, e, ctxDir, "skiff-test/e2e-testapp:latest")

	bundle := pack(t, dir)
	ctx := context.Background()
	rel, err := deploy(ctx, s.client, bundle)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitStatus(t, s.client, app, rel.Number, 60*time.Second); r.Status != "complete" {
		t.Fatalf("first deploy: %s: %s", r.Status, r.Message)
	}
	load := startLoad(s.httpAddr, app+".localhost", 8, 120*time.Second)
	const deploys = 10
	for i := range deploys {
		rel, err := deploy(ctx, s.client, bundle)
		if err != nil {
			t.Fatalf("deploy %d: %v", i, err)
		}
		if r := waitStatus(t, s.client, app, rel.Number, 60*time.Second); r.Status != "complete" {
			t.Fatalf("deploy %d: release %d %s: %s", i, rel.Number, r.Status, r.Message)
		}
		// Once the deploy is done, every answer comes from the new release.
		for range 10 {
			body, err := get(http.DefaultClient, s.httpAddr, app+".localhost")
			if err != nil {
				t.Fatalf("after deploy %d: %v", i, err)
			}
			if want := fmt.Sprintf("release %d ", rel.Number); !strings.HasPrefix(body, want) {
				t.Fatalf("after release %d was done, answer %q", rel.Number, body)
			}
		}
	}
	res := load.stop()
	t.Logf("%d requests during %d deploys: %d failed", res.ok+int64(len(res.failures)), deploys, len(res.failures))
	if res.ok < 100 {
		t.Fatalf("only %d requests succeeded: the load did not run", res.ok)
	}
	if len(res.failures) > 0 {
		t.Fatalf("%d requests failed, first: %v", len(res.failures), res.failures[:min(5, len(res.failures))])
	}
}
