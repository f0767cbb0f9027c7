package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/testenv"
)

// tcpClient is one connection to the edge's TCP port.
type tcpClient struct {
	c net.Conn
	r *bufio.Reader
}

func dialTCP(addr string) (*tcpClient, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	return &tcpClient{c: c, r: bufio.NewReader(c)}, nil
}

// ask sends a line and returns the release and instance that answered.
func (tc *tcpClient) ask(line string) (release int, inst string, err error) {
	tc.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(tc.c, "%s\n", line); err != nil {
		return 0, "", err
	}
	got, err := tc.r.ReadString('\n')
	if err != nil {
		return 0, "", err
	}
	var rest string
	if _, err := fmt.Sscanf(got, "release %d instance %s", &release, &rest); err != nil {
		return 0, "", fmt.Errorf("answer %q: %w", got, err)
	}
	inst = strings.TrimSuffix(rest, ":")
	if want := fmt.Sprintf("release %d instance %s: %s\n", release, inst, line); got != want {
		return 0, "", fmt.Errorf("answer %q, want %q", got, want)
	}
	return release, inst, nil
}

// TestTCPForwarding deploys a line-echo app with a tcp: port through a
// real server: connections are balanced over both instances, skip an
// unready one, survive a deploy under load without one failing, and an
// open connection to a leaving instance keeps working until the drain
// deadline, while new ones go to the new release.
func TestTCPForwarding(t *testing.T) {
	const drain = 3 * time.Second
	s := newServer(t, "--tcp-addr", "127.0.0.1", "--drain-timeout", drain.String())
	s.start()
	port := testenv.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	unready, err := os.MkdirTemp("", "skiff-unready-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(unready) })
	os.Chmod(unready, 0o755) // the app runs unprivileged and must see into it
	b := pack(t, appDir(t, fmt.Sprintf(`name: echo
command: ["./testapp"]
replicas: 2
env: {ECHO_TCP: "1", UNREADY_DIR: %q}
health: {path: /healthz, interval: 100ms, timeout: 100ms, threshold: 1}
tcp: [{port: %d, srv: echo}]
`, unready, port)))
	ctx := context.Background()
	rel, err := deploy(ctx, s.client, b)
	if err != nil {
		t.Fatal(err)
	}
	if r := waitStatus(t, s.client, "echo", rel.Number, 60*time.Second); r.Status != "complete" {
		t.Fatalf("deploy: %s: %s", r.Status, r.Message)
	}

	// hold opens n connections and reports which instance each reached.
	hold := func(n int) ([]*tcpClient, map[string]int) {
		t.Helper()
		var conns []*tcpClient
		seen := map[string]int{}
		for i := range n {
			var c *tcpClient
			var inst string
			// The edge opens the port once it has the route: allow it a moment.
			eventually(t, 10*time.Second, func() error {
				var err error
				if c, err = dialTCP(addr); err != nil {
					return err
				}
				if _, inst, err = c.ask(fmt.Sprint("hello ", i)); err != nil {
					c.c.Close()
				}
				return err
			})
			conns = append(conns, c)
			seen[inst]++
		}
		return conns, seen
	}
	closeAll := func(conns []*tcpClient) {
		for _, c := range conns {
			c.c.Close()
		}
	}

	conns, seen := hold(10)
	if len(seen) != 2 {
		t.Fatalf("10 open connections reached %v; want both instances", seen)
	}
	closeAll(conns)

	t.Run("unready instance gets no new connection", func(t *testing.T) {
		st, err := s.client.App(ctx, "echo")
		if err != nil {
			t.Fatal(err)
		}
		sick := st.Sets[0].Instances[0].ID
		if err := os.WriteFile(filepath.Join(unready, sick), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, func() error {
			st, err := s.client.App(ctx, "echo")
			if err != nil {
				return err
			}
			for _, in := range st.Sets[0].Instances {
				if in.ID == sick && in.State != "unready" {
					return fmt.Errorf("instance %s is %s", sick, in.State)
				}
			}
			return nil
		})
		conns, seen := hold(10)
		closeAll(conns)
		if seen[sick] != 0 {
			t.Errorf("the unready instance %s got %d of 10 new connections", sick, seen[sick])
		}
		os.Remove(filepath.Join(unready, sick))
		eventually(t, 10*time.Second, func() error {
			st, err := s.client.App(ctx, "echo")
			if err != nil {
				return err
			}
			if st.Ready != 2 {
				return fmt.Errorf("%d ready", st.Ready)
			}
			return nil
		})
	})

	t.Run("deploy under load", func(t *testing.T) {
		old, err := dialTCP(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer old.c.Close()
		oldRel, oldInst, err := old.ask("before")
		if err != nil {
			t.Fatal(err)
		}

		// Load: short connections, each one line, until stopped.
		load := startConnLoad(4, 120*time.Second, func() error {
			c, err := dialTCP(addr)
			if err != nil {
				return err
			}
			defer c.c.Close()
			_, _, err = c.ask("load")
			return err
		})
		defer load.stop() // on an early failure; stop may run twice

		rel2, err := deploy(ctx, s.client, b)
		if err != nil {
			t.Fatal(err)
		}
		// The old connection keeps working while its instance drains: it
		// answers from the old release after the new one is serving.
		var newSeen bool
		deadline := time.Now().Add(30 * time.Second)
		for !newSeen && time.Now().Before(deadline) {
			if c, err := dialTCP(addr); err == nil {
				r, _, err := c.ask("probe")
				c.c.Close()
				newSeen = err == nil && r == rel2.Number
			}
			time.Sleep(20 * time.Millisecond)
		}
		if !newSeen {
			t.Fatal("no new connection reached the new release")
		}
		r, inst, err := old.ask("during")
		if err != nil || r != oldRel || inst != oldInst {
			t.Fatalf("open connection during the deploy: release %d instance %s, %v; want release %d instance %s", r, inst, err, oldRel, oldInst)
		}
		final := waitStatus(t, s.client, "echo", rel2.Number, 60*time.Second)
		ok, failed, firstErr := load.stop()
		if final.Status != "complete" {
			t.Fatalf("deploy: %s: %s", final.Status, final.Message)
		}
		if failed != 0 {
			t.Errorf("%d of %d connections failed across the deploy; first: %v", failed, ok+failed, firstErr)
		}
		if ok < 20 {
			t.Errorf("only %d connections succeeded; the load did not run", ok)
		}
		// The drain deadline ended the old connection.
		old.c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := old.r.ReadByte(); err == nil {
			t.Error("the old connection still answers after its instance left")
		}
		for range 10 {
			c, err := dialTCP(addr)
			if err != nil {
				t.Fatal(err)
			}
			r, _, err := c.ask("after")
			c.c.Close()
			if err != nil || r != rel2.Number {
				t.Fatalf("after the deploy: release %d, %v; want %d", r, err, rel2.Number)
			}
		}
	})

	t.Run("port used by another app", func(t *testing.T) {
		spec := fmt.Sprintf("name: other\ncommand: [\"./testapp\"]\ntcp:\n  - port: %d\n", port)
		_, err := deploy(ctx, s.client, pack(t, appDir(t, spec)))
		var apiErr *api.Error
		if !errors.As(err, &apiErr) || apiErr.Code != api.CodePortInUse {
			t.Fatalf("err = %v, want %s", err, api.CodePortInUse)
		}
		want := fmt.Sprintf(`skiff.yaml:4:5: tcp[0].port: TCP port %d is already forwarded to app "echo"`, port)
		if !strings.HasPrefix(apiErr.Message, want) {
			t.Errorf("message %q, want it to start with %q", apiErr.Message, want)
		}
	})
}
