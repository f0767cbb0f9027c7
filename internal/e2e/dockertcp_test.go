package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/testenv"
)

// TestDockerTCPTarget: a container app whose tcp: entry forwards an edge
// port to another port inside the container (target:) is reached through
// the edge, on both instances, and its HTTP port still serves and probes.
// The target is published on 127.0.0.1 like the app's own port; without
// that, the edge would have no address for it and refuse connections.
func TestDockerTCPTarget(t *testing.T) {
	app := "dtcp" + fmt.Sprint(time.Now().UnixNano()%1e6)
	s, _ := dockerServer(t, app, "--tcp-addr", "127.0.0.1")
	port := testenv.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	dir := dockerAppDir(t, fmt.Sprintf(`name: %s
build: .
port: 8080
replicas: 2
env: {LISTEN_HOST: 0.0.0.0, ECHO_TCP_PORT: "7000"}
health: {path: /healthz, interval: 200ms, timeout: 200ms}
tcp: [{port: %d, target: 7000}]
`, app, port), testenv.AppDockerfile)
	ctx := context.Background()
	rel, err := deploy(ctx, s.client, pack(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	if r := waitStatus(t, s.client, app, rel.Number, 120*time.Second); r.Status != "complete" {
		t.Fatalf("deploy: %s: %s", r.Status, r.Message)
	}
	st, err := s.client.App(ctx, app)
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range st.Sets[0].Instances {
		if in.Ports[7000] == "" || in.Ports[7000] == in.Endpoint {
			t.Errorf("instance %s reports ports %v (endpoint %s); want 7000 published at an address of its own", in.ID, in.Ports, in.Endpoint)
		}
	}

	seen := map[string]int{}
	for i := range 10 {
		var inst string
		// The edge opens the port once it has the route: allow it a moment.
		eventually(t, 10*time.Second, func() error {
			c, err := dialTCP(addr)
			if err != nil {
				return err
			}
			defer c.c.Close()
			var r int
			r, inst, err = c.ask(fmt.Sprint("hello ", i))
			if err == nil && r != rel.Number {
				err = fmt.Errorf("answered by release %d, want %d", r, rel.Number)
			}
			return err
		})
		seen[inst]++
	}
	if len(seen) != 2 {
		t.Errorf("10 connections reached %v; want both instances", seen)
	}
	if body, err := get(http.DefaultClient, s.httpAddr, app+".localhost"); err != nil || !strings.HasPrefix(body, fmt.Sprintf("release %d ", rel.Number)) {
		t.Errorf("HTTP through the edge = %q, %v; want an answer from release %d", body, err, rel.Number)
	}
}
