// Package testenv gives skiff's integration tests what they share: free
// loopback ports, a data dir the unprivileged app user can reach, the demo
// app built once, and cleanup of the app processes a test's server left
// running (the data plane outlives the server, so tests must end it).
package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// RequireIntegration is true when a missing component must fail a test
// instead of skipping it (CI sets it).
func RequireIntegration() bool { return os.Getenv("SKIFF_REQUIRE_INTEGRATION") == "1" }

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := Port()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Port is FreePort for callers without a testing.TB.
func Port() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// DataDir makes a data dir outside t.TempDir (whose 0700 parent the
// unprivileged app user cannot pass) and, at cleanup, kills every app
// process running from it.
func DataDir(t testing.TB) string {
	t.Helper()
	dir, err := MakeDataDir()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { RemoveDataDir(dir) })
	return dir
}

// MakeDataDir is DataDir for callers without a testing.TB.
func MakeDataDir() (string, error) {
	dir, err := os.MkdirTemp("", "skiff-test-")
	if err != nil {
		return "", err
	}
	return dir, os.Chmod(dir, 0o711)
}

// RemoveDataDir kills the apps started from dir, then removes it.
func RemoveDataDir(dir string) {
	KillInstances(dir)
	os.RemoveAll(dir)
}

// KillInstances SIGKILLs the process group of every skiff instance whose
// working directory is inside dataDir.
func KillInstances(dataDir string) {
	prefix := filepath.Clean(dataDir) + string(filepath.Separator)
	for _, pid := range InstancePIDs(prefix) {
		syscall.Kill(-pid, syscall.SIGKILL)
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// InstancePIDs lists the group leaders of skiff instances whose working
// directory starts with prefix.
func InstancePIDs(prefix string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil || !strings.HasPrefix(cwd, prefix) {
			continue
		}
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if err != nil || !bytes.Contains(env, []byte("SKIFF_INSTANCE=")) {
			continue
		}
		if pgid, err := syscall.Getpgid(pid); err == nil && pgid == pid {
			pids = append(pids, pid)
		}
	}
	return pids
}

var (
	helloOnce sync.Once
	helloBin  string
	helloErr  error
)

// HelloBinary builds examples/hello once per test process and returns the
// binary's path, readable and executable by everyone.
func HelloBinary(t testing.TB) string {
	t.Helper()
	helloOnce.Do(func() {
		dir, err := os.MkdirTemp("", "skiff-hello-")
		if err != nil {
			helloErr = err
			return
		}
		os.Chmod(dir, 0o755)
		helloBin = filepath.Join(dir, "hello")
		cmd := exec.Command("go", "build", "-o", helloBin, ".")
		cmd.Dir = filepath.Join(RepoRoot(), "examples", "hello")
		if out, err := cmd.CombinedOutput(); err != nil {
			helloErr = fmt.Errorf("build examples/hello: %v\n%s", err, out)
		}
	})
	if helloErr != nil {
		t.Fatal(helloErr)
	}
	return helloBin
}

// RepoRoot finds the module root from the working directory.
func RepoRoot() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "."
		}
		dir = parent
	}
}
