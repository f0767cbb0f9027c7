package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/server"
	"github.com/skiff-sh/skiff/internal/testenv"
)

// startEdgeProc runs `skiff edge` following s, and returns its HTTP
// address once it serves.
func startEdgeProc(t *testing.T, s *serverProc, name string) string {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(s.dataDir, server.TokenName))
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	logPath := filepath.Join(t.TempDir(), "edge.log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bins.skiff, "edge", "--server", "http://"+s.apiAddr, "--name", name,
		"--http-addr", addr, "--access-log", "off", "--tcp-addr", "127.0.0.1")
	cmd.Env = append(os.Environ(), "SKIFF_TOKEN="+strings.TrimSpace(string(token)))
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("edge log:\n%s", b)
		}
	})
	return addr
}

// TestEdgeProcess runs the edge as a process of its own: it serves the
// server's routes, a rolling deploy through it under load loses nothing
// (drains wait for requests on that edge too), it keeps serving its last
// routes while the server is killed, and follows again once the server
// is back.
func TestEdgeProcess(t *testing.T) {
	s := newServer(t)
	s.start()
	const spec = "name: web\ncommand: [\"./testapp\"]\nreplicas: 2\nenv: {HOLD: 50ms}\nhealth: {path: /healthz, interval: 200ms, timeout: 200ms}\n"
	b := pack(t, appDir(t, spec))
	ctx := context.Background()
	rel, err := deploy(ctx, s.client, b)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitStatus(t, s.client, "web", rel.Number, 30*time.Second); r.Status != "complete" {
		t.Fatalf("release %d: %s: %s", rel.Number, r.Status, r.Message)
	}
	edgeAddr := startEdgeProc(t, s, "edge-a")
	answers := func(want int) {
		t.Helper()
		eventually(t, 20*time.Second, func() error {
			body, err := get(http.DefaultClient, edgeAddr, "web.localhost")
			if err != nil {
				return err
			}
			if !strings.HasPrefix(body, fmt.Sprintf("release %d ", want)) {
				return fmt.Errorf("the edge process answers %q, want release %d", body, want)
			}
			return nil
		})
	}
	answers(rel.Number)
	edges, err := s.client.Edges(ctx)
	if err != nil || len(edges) != 1 || edges[0].Name != "edge-a" || !edges[0].Connected || edges[0].Generation == 0 {
		t.Fatalf("the server's edges: %+v, %v; want edge-a connected", edges, err)
	}

	// Deploys under load through the edge process: nothing lost.
	load := startLoad(edgeAddr, "web.localhost", 6, 90*time.Second)
	for range 3 {
		rel, err = deploy(ctx, s.client, b)
		if err != nil {
			load.stop()
			t.Fatal(err)
		}
		if r := waitStatus(t, s.client, "web", rel.Number, 60*time.Second); r.Status != "complete" {
			load.stop()
			t.Fatalf("release %d: %s: %s", rel.Number, r.Status, r.Message)
		}
		for range 5 {
			body, err := get(http.DefaultClient, edgeAddr, "web.localhost")
			if err != nil || !strings.HasPrefix(body, fmt.Sprintf("release %d ", rel.Number)) {
				load.stop()
				t.Fatalf("after release %d was done the edge process answered %q, %v", rel.Number, body, err)
			}
		}
	}
	res := load.stop()
	t.Logf("through the edge process: %d requests over 3 deploys, %d failed", res.ok+int64(len(res.failures)), len(res.failures))
	if len(res.failures) > 0 {
		t.Fatalf("%d requests failed, first: %v", len(res.failures), res.failures[:min(5, len(res.failures))])
	}

	// The control plane dies: the edge keeps serving its last routes.
	s.kill()
	for range 50 {
		body, err := get(http.DefaultClient, edgeAddr, "web.localhost")
		if err != nil || !strings.HasPrefix(body, fmt.Sprintf("release %d ", rel.Number)) {
			t.Fatalf("with the server down the edge process answered %q, %v", body, err)
		}
	}
	// Back: the edge follows again and serves the next release.
	s.start()
	c, err := client.New("unix://"+filepath.Join(s.dataDir, server.SocketName), "")
	if err != nil {
		t.Fatal(err)
	}
	rel, err = deploy(ctx, c, b)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitStatus(t, c, "web", rel.Number, 60*time.Second); r.Status != "complete" {
		t.Fatalf("release %d after the restart: %s: %s", rel.Number, r.Status, r.Message)
	}
	answers(rel.Number)
}
