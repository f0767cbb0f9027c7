package process

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/skiff-sh/skiff/internal/instance"
)

// defaultCgroupRoot is where cgroup v2 is mounted on a unified-hierarchy
// system.
const defaultCgroupRoot = "/sys/fs/cgroup"

// cpuPeriod is the cpu.max period in microseconds; the quota is CPU cores
// times this.
const cpuPeriod = 100000

// cgroups keeps one cgroup per instance under <root>/skiff-<node>, so each
// instance gets its own memory and CPU limits and a crash of one cannot
// starve the others.
type cgroups struct {
	dir string
	// controllers must be enabled for instance cgroups; limits are written
	// only for those.
	controllers []string
}

// openCgroups checks that a cgroup v2 hierarchy is mounted at root and
// writable, creates the node's parent cgroup and enables the controllers
// for its children. Any failure says why limits are not possible.
func openCgroups(root, node string, controllers []string) (*cgroups, error) {
	var fs unix.Statfs_t
	if err := unix.Statfs(root, &fs); err != nil {
		return nil, fmt.Errorf("no cgroup filesystem at %s: %w", root, err)
	}
	if fs.Type != unix.CGROUP2_SUPER_MAGIC {
		return nil, fmt.Errorf("%s is not a cgroup v2 (unified) hierarchy", root)
	}
	if err := unix.Access(root, unix.W_OK); err != nil {
		return nil, fmt.Errorf("cgroup hierarchy %s is not writable: %w", root, err)
	}
	if err := hasControllers(root, controllers); err != nil {
		return nil, err
	}
	dir := filepath.Join(root, "skiff-"+node)
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup %s: %w", dir, err)
	}
	if len(controllers) > 0 {
		if err := enableControllers(root, controllers); err != nil {
			return nil, err
		}
		if err := enableControllers(dir, controllers); err != nil {
			return nil, err
		}
	}
	return &cgroups{dir: dir, controllers: controllers}, nil
}

// hasControllers checks that cgroup dir offers every controller.
func hasControllers(dir string, want []string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("read cgroup controllers: %w", err)
	}
	have := strings.Fields(string(b))
	for _, c := range want {
		if !slices.Contains(have, c) {
			return fmt.Errorf("cgroup %s lacks the %s controller (has %q)", dir, c, have)
		}
	}
	return nil
}

// enableControllers turns controllers on for dir's children.
func enableControllers(dir string, controllers []string) error {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("read cgroup %s subtree controllers: %w", dir, err)
	}
	on := strings.Fields(string(b))
	var add []string
	for _, c := range controllers {
		if !slices.Contains(on, c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(add, " ")), 0); err != nil {
		return fmt.Errorf("enable cgroup controllers %s in %s: %w", add, dir, err)
	}
	return nil
}

// path is the cgroup of instance id.
func (c *cgroups) path(id string) string { return filepath.Join(c.dir, id) }

// prepare makes a fresh cgroup for a run of instance id with r's limits and
// returns it opened, for SysProcAttr.CgroupFD: the child starts inside it,
// so no process of the instance ever runs unlimited. The caller closes it.
func (c *cgroups) prepare(id string, r instance.Resources) (*os.File, error) {
	p := c.path(id)
	// A cgroup left by an earlier run is made anew, so memory.events counts
	// only this run's OOM kills. It cannot be removed while remnants of the
	// old run live in it; then it is reused.
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.EBUSY) {
		return nil, fmt.Errorf("remove old cgroup %s: %w", p, err)
	}
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("create cgroup %s: %w", p, err)
	}
	if slices.Contains(c.controllers, "memory") {
		if err := writeCgroup(p, "memory.max", memoryMax(r.MemoryBytes)); err != nil {
			return nil, err
		}
	}
	if slices.Contains(c.controllers, "cpu") {
		if err := writeCgroup(p, "cpu.max", cpuMax(r.CPU)); err != nil {
			return nil, err
		}
	}
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open cgroup %s: %w", p, err)
	}
	return f, nil
}

func writeCgroup(dir, file, value string) error {
	if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0); err != nil {
		return fmt.Errorf("set %s of cgroup %s to %q: %w", file, dir, value, err)
	}
	return nil
}

// memoryMax is memory.max for a limit in bytes; 0 is unlimited.
func memoryMax(bytes int64) string {
	if bytes <= 0 {
		return "max"
	}
	return strconv.FormatInt(bytes, 10)
}

// cpuMax is cpu.max for a limit in cores; 0 is unlimited. Tiny limits are
// raised to the kernel's minimum quota of 1ms.
func cpuMax(cores float64) string {
	if cores <= 0 {
		return "max " + strconv.Itoa(cpuPeriod)
	}
	quota := max(int64(cores*cpuPeriod), 1000)
	return strconv.FormatInt(quota, 10) + " " + strconv.Itoa(cpuPeriod)
}

// kill kills every process in instance id's cgroup, including any that
// left the instance's process group.
func (c *cgroups) kill(id string) error {
	err := os.WriteFile(filepath.Join(c.path(id), "cgroup.kill"), []byte("1"), 0)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("kill cgroup of %s: %w", id, err)
	}
	return nil
}

// oomKilled tells whether the kernel killed a process of instance id's
// cgroup for exceeding its memory limit.
func (c *cgroups) oomKilled(id string) bool {
	b, err := os.ReadFile(filepath.Join(c.path(id), "memory.events"))
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "oom_kill "); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n > 0
		}
	}
	return false
}

// remove deletes instance id's cgroup. Processes killed a moment ago may
// still be leaving it, so a busy cgroup is tried again for a short while.
func (c *cgroups) remove(id string) error {
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := os.Remove(c.path(id))
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if !errors.Is(err, unix.EBUSY) || time.Now().After(deadline) {
			return fmt.Errorf("remove cgroup of %s: %w", id, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
