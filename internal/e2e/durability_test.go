package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/testenv"
)

// TestKillDuringDeploys kills the server with SIGKILL 50 times while three
// apps deploy concurrently. After each restart every release whose
// creation was acknowledged is present with its spec and files, and once
// the deploys settle each app runs exactly its replicas, with no orphan
// process and no duplicate.
func TestKillDuringDeploys(t *testing.T) {
	rounds := 50
	if testing.Short() {
		rounds = 5
	}
	s := newServer(t)
	apps := []string{"alpha", "beta", "gamma"}
	bundles := map[string]bundle{}
	for i, app := range apps {
		bundles[app] = pack(t, appDir(t, fmt.Sprintf(`name: %s
command: ["./testapp"]
replicas: %d
health: {path: /healthz, interval: 100ms, timeout: 100ms}
`, app, i+1)))
	}
	acked := map[string][]int{}
	s.start()
	for round := range rounds {
		// Deploy concurrently until the kill.
		ctx, cancel := context.WithCancel(context.Background())
		var mu sync.Mutex
		var wg sync.WaitGroup
		for _, app := range apps {
			wg.Go(func() {
				for ctx.Err() == nil {
					rel, err := deploy(ctx, s.client, bundles[app])
					if err != nil {
						var apiErr *api.Error
						if errors.As(err, &apiErr) {
							t.Errorf("deploy of %s refused: %v", app, err)
						}
						return // the server died mid-request: not acknowledged
					}
					mu.Lock()
					acked[app] = append(acked[app], rel.Number)
					mu.Unlock()
				}
			})
		}
		time.Sleep(time.Duration(100+rand.IntN(500)) * time.Millisecond)
		s.kill()
		cancel()
		wg.Wait()

		s.start()
		for _, app := range apps {
			for _, n := range acked[app] {
				rel, err := s.client.Release(context.Background(), app, n)
				if err != nil {
					t.Fatalf("round %d: acknowledged release %d of %s: %v", round, n, app, err)
				}
				if rel.Spec == "" || rel.Artifact == "" {
					t.Fatalf("round %d: release %d of %s is half there: %+v", round, n, app, rel)
				}
				if _, err := os.Stat(filepath.Join(s.dataDir, "artifacts", rel.Artifact+".tar.gz")); err != nil {
					t.Fatalf("round %d: release %d of %s has no files: %v", round, n, app, err)
				}
			}
		}
		settle(t, s, apps)
	}

	// One last deploy of each app, then everything must settle.
	final := map[string]int{}
	for _, app := range apps {
		rel, err := deploy(context.Background(), s.client, bundles[app])
		if err != nil {
			t.Fatal(err)
		}
		final[app] = rel.Number
	}
	for _, app := range apps {
		if r := waitStatus(t, s.client, app, final[app], 60*time.Second); r.Status != "complete" {
			t.Fatalf("final release %d of %s: %s: %s", r.Number, app, r.Status, r.Message)
		}
	}
	want := settle(t, s, apps)
	total := 0
	for _, app := range apps {
		total += len(acked[app])
	}
	t.Logf("%d rounds, %d acknowledged releases, converged to %d instances", rounds, total, want)
	if total < rounds/2 {
		t.Fatalf("only %d releases acknowledged in %d rounds: the deploys did not run", total, rounds)
	}
}

// settle waits until every app runs exactly its replicas of its target
// release, and the machine runs exactly those app processes: no orphan,
// no duplicate. It returns the number of instances.
func settle(t testing.TB, s *serverProc, apps []string) int {
	t.Helper()
	want := 0
	eventually(t, 60*time.Second, func() error {
		want = 0
		for _, app := range apps {
			st, err := s.client.App(context.Background(), app)
			var apiErr *api.Error
			if errors.As(err, &apiErr) && apiErr.Code == api.CodeNotFound {
				continue // never deployed yet
			}
			if err != nil {
				return err
			}
			if err := converged(s.client, app, st.Target, st.Replicas); err != nil {
				return err
			}
			want += st.Replicas
		}
		pids := testenv.InstancePIDs(filepath.Clean(s.dataDir) + "/")
		if len(pids) != want {
			return fmt.Errorf("%d app processes run from the data dir, want %d", len(pids), want)
		}
		return nil
	})
	return want
}
