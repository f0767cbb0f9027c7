package process

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestLimitValues(t *testing.T) {
	tests := []struct {
		name       string
		cores      float64
		bytes      int64
		cpu, memry string
	}{
		{"unlimited", 0, 0, "max 100000", "max"},
		{"half a core, 256Mi", 0.5, 256 << 20, "50000 100000", "268435456"},
		{"two cores", 2, 1, "200000 100000", "1"},
		{"tiny cpu is raised to the kernel minimum", 0.001, 0, "1000 100000", "max"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cpuMax(tt.cores); got != tt.cpu {
				t.Errorf("cpuMax(%v) = %q, want %q", tt.cores, got, tt.cpu)
			}
			if got := memoryMax(tt.bytes); got != tt.memry {
				t.Errorf("memoryMax(%d) = %q, want %q", tt.bytes, got, tt.memry)
			}
		})
	}
}

func TestOpenCgroupsRefusesNonCgroup2(t *testing.T) {
	_, err := openCgroups(t.TempDir(), "n", []string{"cpu", "memory"})
	if err == nil || !strings.Contains(err.Error(), "not a cgroup v2") {
		t.Errorf("err = %v, want one saying it is not a cgroup v2 hierarchy", err)
	}
}

// TestCgroupPlacement checks that an instance starts inside its own
// cgroup and that Cleanup removes it. Machines whose cgroup v2 hierarchy
// offers no cpu and memory controllers (limits off) still test the
// placement on whatever cgroup v2 mount they have, without limits.
func TestCgroupPlacement(t *testing.T) {
	root := ""
	for _, p := range []string{defaultCgroupRoot, filepath.Join(defaultCgroupRoot, "unified")} {
		var fs unix.Statfs_t
		if unix.Statfs(p, &fs) == nil && fs.Type == unix.CGROUP2_SUPER_MAGIC && unix.Access(p, unix.W_OK) == nil {
			root = p
			break
		}
	}
	if root == "" {
		t.Skip("no writable cgroup v2 hierarchy here")
	}
	d := newTestDriver(t, "")
	cg, err := openCgroups(root, d.nodeID, nil)
	if err != nil {
		t.Skipf("cannot create cgroups here: %v", err)
	}
	t.Cleanup(func() { os.Remove(cg.dir) })
	d.cg = cg

	h := startApp(t, d, "app-3-cgrp", map[string]string{"TESTAPP_CHILD": "1"})
	child := childPID(t, d, h)
	want := fmt.Sprintf("0::/skiff-%s/%s\n", d.nodeID, h.ID)
	for _, pid := range []int{h.PID, child} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil || !strings.Contains(string(b), want) {
			t.Errorf("pid %d is in cgroups %q, want %q", pid, b, want)
		}
	}
	if err := d.Stop(context.Background(), h, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	awaitGone(t, child)
	if err := d.Cleanup(context.Background(), h); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cg.path(h.ID)); !os.IsNotExist(err) {
		t.Errorf("instance cgroup still there after Cleanup: %v", err)
	}
}
