package kubetest

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/testenv"
)

// PodCIDR is where a cluster's pods take their IPs unless Options say
// otherwise.
const PodCIDR = "10.244.0.0/16"

// netnsEnv marks the copy of a test binary that runs inside the network
// namespace; its value is the test's name and, after "|", the network
// namespace it was started from.
const netnsEnv = "SKIFF_KUBETEST_NETNS"

// InNetNS runs the test t inside a network namespace of its own, where
// the pod address range is local: a listener can bind any pod IP, so
// something can answer for pods that kwok only pretends to run, and
// traffic to those addresses never leaves the namespace.
//
// The first call, in the test binary go test started, re-executes that
// binary for t alone under `unshare --net`, waits for it, passes on its
// output and its verdict, and returns false: the caller returns at once.
// In the re-executed copy it brings lo up, routes PodCIDR to lo and
// returns true: the caller goes on with the test there, starting its
// cluster (which listens on loopback) inside the namespace too. Call it
// first in a top-level test, before Require, so the parent starts no
// cluster of its own.
//
// Without root, unshare or ip it skips t, or fails it under
// SKIFF_REQUIRE_INTEGRATION=1.
func InNetNS(t *testing.T) bool {
	t.Helper()
	if name, parentNS, ok := strings.Cut(os.Getenv(netnsEnv), "|"); ok && name == t.Name() {
		// Never change the routes of the namespace the test was started
		// in: only a copy that unshare moved into a new one goes on.
		if ns, err := os.Readlink("/proc/self/ns/net"); err != nil || ns == parentNS {
			t.Fatalf("%s=%s is set, but this process is not in a network namespace of its own (%s, %v)", netnsEnv, os.Getenv(netnsEnv), ns, err)
		}
		for _, args := range [][]string{
			{"link", "set", "lo", "up"},
			{"route", "add", "local", PodCIDR, "dev", "lo"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %s in the test's network namespace: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		return true
	}
	if err := netnsAvailable(); err != nil {
		if testenv.RequireIntegration() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	if _, err := FindTools(); err != nil {
		if testenv.RequireIntegration() {
			t.Fatal(err)
		}
		t.Skip(err)
	}

	args := []string{"--net", "--", os.Args[0],
		"-test.run=^" + regexp.QuoteMeta(t.Name()) + "$", "-test.v=true", "-test.count=1"}
	if d, ok := t.Deadline(); ok && time.Until(d) > time.Minute {
		// The copy ends, with its goroutines' stacks, before this binary's
		// own timeout kills both without a word.
		args = append(args, "-test.timeout="+(time.Until(d)-10*time.Second).Round(time.Second).String())
	}
	ns, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatalf("this process's network namespace: %v", err)
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), netnsEnv+"="+t.Name()+"|"+ns)
	var out bytes.Buffer
	cmd.Stdout = &out
	if testing.Verbose() {
		// Long scenarios: show their progress as it comes.
		cmd.Stdout = io.MultiWriter(&out, os.Stdout)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	err = cmd.Run()
	took := time.Since(start).Round(time.Millisecond)
	switch {
	case err != nil:
		if !testing.Verbose() {
			t.Log(out.String())
		}
		t.Fatalf("%s in its network namespace: %v after %s", t.Name(), err, took)
	case bytes.Contains(out.Bytes(), []byte("--- SKIP: "+t.Name()+" ")):
		t.Skipf("%s skipped in its network namespace (see its output above)", t.Name())
	case !bytes.Contains(out.Bytes(), []byte("--- PASS: "+t.Name()+" ")):
		t.Log(out.String())
		t.Fatalf("%s: its run in a network namespace did not report a pass", t.Name())
	}
	t.Logf("%s passed in its network namespace in %s", t.Name(), took)
	return false
}

// netnsAvailable says why this machine cannot make a network namespace,
// or nil.
func netnsAvailable() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("a network namespace for pod traffic needs root (unshare --net, ip route); run the test as root")
	}
	for _, bin := range []string{"unshare", "ip"} {
		if _, err := exec.LookPath(bin); err != nil {
			return fmt.Errorf("a network namespace for pod traffic needs %s (Debian: util-linux, iproute2): %w", bin, err)
		}
	}
	return nil
}
