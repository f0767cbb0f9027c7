package store

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// crashChildEnv, when set to a store path, turns the test binary into the
// writer child of TestCrashConsistency.
const crashChildEnv = "SKIFF_STORE_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		if err := crashChild(path); err != nil {
			fmt.Fprintln(os.Stderr, "crash child:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashSpec is the spec the child stores for release n, so the parent can
// check it without talking to the child.
func crashSpec(n int) []byte { return fmt.Appendf(nil, "name: crash\n# release %d\n", n) }

// crashChild deploys release after release of app "crash", each created and
// completed, and prints the number of each once FinishRelease returned: a
// printed number is an acknowledged write. It stops after a bounded count
// in case the parent never kills it.
func crashChild(path string) error {
	s, err := Open(path)
	if err != nil {
		return err
	}
	ctx := context.Background()
	out := bufio.NewWriter(os.Stdout)
	for range 5000 {
		next := 1
		if _, err := s.App(ctx, "crash"); err == nil {
			rels, err := s.Releases(ctx, "crash")
			if err != nil {
				return err
			}
			next = rels[0].Number + 1
		}
		spec := crashSpec(next)
		rel, err := s.CreateRelease(ctx, NewRelease{
			App: "crash", SpecFile: "skiff.yaml", Spec: spec, Artifact: digestOf(string(spec)),
			Hosts: []string{"crash.example.com"},
		})
		if err != nil {
			return err
		}
		if rel.Number != next {
			return fmt.Errorf("release numbered %d, want %d", rel.Number, next)
		}
		if err := s.FinishRelease(ctx, "crash", rel.Number, StatusComplete, "ok"); err != nil {
			return err
		}
		fmt.Fprintln(out, rel.Number)
		if err := out.Flush(); err != nil {
			return err
		}
	}
	return s.Close()
}

// TestCrashConsistency kills a writer with SIGKILL in the middle of its
// work, over and over, and checks after each kill that every release it had
// acknowledged is in the store, whole and complete.
func TestCrashConsistency(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns writer processes")
	}
	path := filepath.Join(t.TempDir(), "skiff.db")
	acked := map[int]bool{}
	maxAcked := 0

	for round := range 10 {
		want := 3 + round*2 // acks to wait for before the kill, varied per round
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
		cmd.Stderr = os.Stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill() })

		lines := make(chan int)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				n, err := strconv.Atoi(sc.Text())
				if err != nil {
					t.Errorf("round %d: child printed %q", round, sc.Text())
					return
				}
				lines <- n
			}
		}()

		deadline := time.After(30 * time.Second)
		got := 0
		for got < want {
			select {
			case n, ok := <-lines:
				if !ok {
					t.Fatalf("round %d: child ended after %d acks (see its stderr)", round, got)
				}
				acked[n] = true
				maxAcked = max(maxAcked, n)
				got++
			case <-deadline:
				t.Fatalf("round %d: only %d of %d acks within 30s", round, got, want)
			}
		}
		// Kill while the child is busy with its next release.
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		// Numbers already in the pipe were acknowledged before the kill.
		for n := range lines {
			acked[n] = true
			maxAcked = max(maxAcked, n)
		}
		cmd.Wait()

		checkCrashStore(t, path, round, acked, maxAcked)
	}
}

func checkCrashStore(t *testing.T, path string, round int, acked map[int]bool, maxAcked int) {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("round %d: reopen after kill: %v", round, err)
	}
	defer s.Close()
	ctx := context.Background()

	var integrity string
	if err := s.r.QueryRow("PRAGMA integrity_check").Scan(&integrity); err != nil || integrity != "ok" {
		t.Fatalf("round %d: integrity_check = %q, %v", round, integrity, err)
	}
	for n := range acked {
		rel, err := s.Release(ctx, "crash", n)
		if err != nil {
			t.Fatalf("round %d: acknowledged release %d lost: %v", round, n, err)
		}
		spec := crashSpec(n)
		if string(rel.Spec) != string(spec) || rel.Artifact != digestOf(string(spec)) || rel.Status != StatusComplete {
			t.Fatalf("round %d: acknowledged release %d = spec %q artifact %s status %s, want spec %q, its digest, complete",
				round, n, rel.Spec, rel.Artifact, rel.Status, spec)
		}
	}
	app, err := s.App(ctx, "crash")
	if err != nil {
		t.Fatalf("round %d: %v", round, err)
	}
	// A release created after the last ack may or may not have made it,
	// but nothing acknowledged may be rolled back.
	if app.Target < maxAcked || app.Stable < maxAcked {
		t.Fatalf("round %d: app target %d, stable %d; want both at least %d, the last acknowledged release",
			round, app.Target, app.Stable, maxAcked)
	}
	if _, err := s.Release(ctx, "crash", app.Target); err != nil {
		t.Fatalf("round %d: target release %d missing: %v", round, app.Target, err)
	}
	if len(app.Hosts) != 1 || app.Hosts[0] != "crash.example.com" {
		t.Fatalf("round %d: hosts = %v", round, app.Hosts)
	}
}
