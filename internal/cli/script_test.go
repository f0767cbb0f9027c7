package cli_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/cli"
	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/runtime/docker"
	"github.com/skiff-sh/skiff/internal/server"
	"github.com/skiff-sh/skiff/internal/testenv"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"skiff": func() { os.Exit(cli.Main()) },
	})
}

// TestScripts runs the CLI end to end against a real `skiff server` on
// free loopback ports: testdata/script/*.txtar.
func TestScripts(t *testing.T) {
	hello := testenv.HelloBinary(t)
	helloStatic, dockerErr := scriptDocker(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		// [docker]: Docker Engine answers. Under SKIFF_REQUIRE_INTEGRATION=1
		// asking fails the script instead, so CI never skips it.
		Condition: func(cond string) (bool, error) {
			if cond != "docker" {
				return false, fmt.Errorf("unknown condition %q", cond)
			}
			if dockerErr != nil && testenv.RequireIntegration() {
				return false, fmt.Errorf("Docker Engine is needed (SKIFF_REQUIRE_INTEGRATION=1): %v", dockerErr)
			}
			return dockerErr == nil, nil
		},
		Setup: func(env *testscript.Env) error {
			dir, err := testenv.MakeDataDir()
			if err != nil {
				return err
			}
			env.Defer(func() { testenv.RemoveDataDir(dir) })
			env.Setenv("SKIFF_DATA_DIR", dir)
			for _, name := range []string{"HTTP_PORT", "API_PORT"} {
				port, err := testenv.Port()
				if err != nil {
					return err
				}
				env.Setenv(name, strconv.Itoa(port))
			}
			env.Setenv("HELLO_BIN", hello)
			// A static build of examples/hello, for FROM scratch images;
			// empty without Docker.
			env.Setenv("HELLO_STATIC", helloStatic)
			if helloStatic != "" {
				// The data plane outlives the server: a script that fails
				// before destroying its container app must not leave it.
				// Only this script's server's containers go (by node, not
				// by app name): scripts run in parallel, and another
				// script's cleanup must not kill the docker script's
				// containers. The node is read before the data dir goes;
				// the containers are removed once the server has stopped,
				// so it cannot start replacements.
				env.Defer(func() {
					node, err := testenv.ServerNode(dir)
					if err != nil {
						env.T().Log("find the script server's node to remove its containers: ", err)
						return
					}
					if node == "" {
						return
					}
					remove := func() {
						e := docker.NewEngine("")
						defer e.Close()
						testenv.RemoveContainers(e, node)
					}
					if tb, ok := env.T().(testing.TB); ok {
						tb.Cleanup(remove)
					} else {
						remove()
					}
				})
			}
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitserver": cmdWaitServer,
			"get":        cmdGet,
			"instances":  cmdInstances,
			"waitready":  cmdWaitReady,
			"waitlogs":   cmdWaitLogs,
			"waitgone":   cmdWaitGone,
		},
	})
}

// scriptDocker pings Docker Engine and, when it answers, builds
// examples/hello statically (CGO_ENABLED=0) for the scripts' images. It
// returns the binary's path, or why Docker cannot be used.
func scriptDocker(t *testing.T) (string, error) {
	e := docker.NewEngine("")
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Ping(ctx); err != nil {
		return "", fmt.Errorf("%w (scripts/test-setup.sh installs and starts it)", err)
	}
	dir := t.TempDir()
	// The server builds the image from a copy the script makes; the
	// directory only needs to be readable.
	if err := testenv.StaticBinary("./examples/hello", dir, "hello"); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "hello"), nil
}

func scriptClient(ts *testscript.TestScript) *client.Client {
	c, err := client.New("unix://"+filepath.Join(ts.Getenv("SKIFF_DATA_DIR"), server.SocketName), "")
	ts.Check(err)
	return c
}

// eventually retries check every 50ms until it passes or timeout ends.
func eventually(ts *testscript.TestScript, timeout time.Duration, check func() error) {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitserver: wait until the server's API answers on its socket.
func cmdWaitServer(ts *testscript.TestScript, neg bool, args []string) {
	c := scriptClient(ts)
	ts.Check(c.WaitHealthy(context.Background(), 30*time.Second))
}

// get [-status CODE] HOST PATH: one request through the edge; the body
// goes to stdout. Without -status the answer must be 200.
func cmdGet(ts *testscript.TestScript, neg bool, args []string) {
	want := http.StatusOK
	if len(args) > 1 && args[0] == "-status" {
		n, err := strconv.Atoi(args[1])
		ts.Check(err)
		want, args = n, args[2:]
	}
	if len(args) != 2 {
		ts.Fatalf("usage: get [-status CODE] HOST PATH")
	}
	status, body, err := edgeGet(ts, args[0], args[1])
	ts.Check(err)
	fmt.Fprint(ts.Stdout(), body)
	if status != want {
		ts.Fatalf("GET %s%s: status %d, want %d; body: %s", args[0], args[1], status, want, body)
	}
}

func edgeGet(ts *testscript.TestScript, host, path string) (int, string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://127.0.0.1:"+ts.Getenv("HTTP_PORT")+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

var instanceRE = regexp.MustCompile(`instance (\S+)`)

// instances HOST N: 100 requests through the edge are answered by exactly
// N distinct instances.
func cmdInstances(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: instances HOST N")
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	seen := map[string]int{}
	for range 100 {
		status, body, err := edgeGet(ts, args[0], "/")
		ts.Check(err)
		if status != http.StatusOK {
			ts.Fatalf("status %d: %s", status, body)
		}
		m := instanceRE.FindStringSubmatch(body)
		if m == nil {
			ts.Fatalf("answer names no instance: %q", body)
		}
		seen[m[1]]++
	}
	ts.Logf("instances seen: %v", seen)
	if len(seen) != want {
		ts.Fatalf("%d distinct instances answered, want %d: %v", len(seen), want, seen)
	}
}

// waitready APP N: wait until the app runs N ready instances and no
// deploy is under way.
func cmdWaitReady(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: waitready APP N")
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	c := scriptClient(ts)
	eventually(ts, 30*time.Second, func() error {
		st, err := c.App(context.Background(), args[0])
		if err != nil {
			return err
		}
		total := 0
		for _, s := range st.Sets {
			total += len(s.Instances)
		}
		if st.Ready != want || total != want || st.Status != "running" {
			return fmt.Errorf("app %s: %d ready, %d instances, status %q; want %d running", args[0], st.Ready, total, st.Status, want)
		}
		return nil
	})
}

// waitlogs APP REGEXP: wait until the app's logs have a matching line.
func cmdWaitLogs(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: waitlogs APP REGEXP")
	}
	re := regexp.MustCompile(args[1])
	c := scriptClient(ts)
	eventually(ts, 20*time.Second, func() error {
		var lines []string
		err := c.Logs(context.Background(), args[0], client.LogQuery{}, func(l api.LogLine) error {
			lines = append(lines, l.Text)
			return nil
		})
		if err != nil {
			return err
		}
		for _, l := range lines {
			if re.MatchString(l) {
				return nil
			}
		}
		return fmt.Errorf("no log line of %s matches %q in:\n%s", args[0], args[1], strings.Join(lines, "\n"))
	})
}

// waitgone APP: wait until the app no longer exists.
func cmdWaitGone(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: waitgone APP")
	}
	c := scriptClient(ts)
	eventually(ts, 30*time.Second, func() error {
		_, err := c.App(context.Background(), args[0])
		var apiErr *api.Error
		if errors.As(err, &apiErr) && apiErr.Code == api.CodeNotFound {
			return nil
		}
		return fmt.Errorf("app %s still exists (%v)", args[0], err)
	})
}
