package process

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

// basePath is the PATH instances get unless their env sets one.
const basePath = "/usr/local/bin:/usr/bin:/bin"

// Start runs one instance of t under id, in its own process group, as the
// driver's user, inside its cgroup when limits are on. It returns once the
// process runs; whether it listens is for the supervisor's probes to find.
func (d *Driver) Start(ctx context.Context, id string, t instance.Template) (supervisor.Handle, error) {
	if err := ctx.Err(); err != nil {
		return supervisor.Handle{}, fmt.Errorf("start instance %s: %w", id, err)
	}
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return supervisor.Handle{}, fmt.Errorf("start instance %q: %w: an instance id must be a plain file name", id, ErrBadOptions)
	}
	port := t.Port
	if port == 0 {
		p, err := freePort()
		if err != nil {
			return supervisor.Handle{}, fmt.Errorf("start instance %s: %w", id, err)
		}
		port = p
	}
	env := instanceEnv(d.nodeID, id, t, port)
	path, err := resolveCommand(t, env["PATH"])
	if err != nil {
		return supervisor.Handle{}, fmt.Errorf("start instance %s: %w", id, err)
	}
	h := supervisor.Handle{
		ID:       id,
		App:      t.App,
		Release:  t.Release,
		Endpoint: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
	}
	// The log file is the child's own stdout and stderr, not a pipe through
	// skiff, so the instance keeps logging while skiff is down. O_APPEND
	// lets the log collector truncate the file under it.
	logf, err := os.OpenFile(d.LogPath(h), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return supervisor.Handle{}, fmt.Errorf("start instance %s: open log: %w", id, err)
	}
	defer logf.Close()

	attr := &syscall.SysProcAttr{
		// Its own group: signals to skiff's group (a terminal's Ctrl-C, a
		// service manager's stop) do not reach it, and Stop can signal
		// the instance with all its children. No Pdeathsig: it must
		// outlive skiff.
		Setpgid: true,
	}
	uid := uint32(os.Geteuid())
	args := t.Command
	switch {
	case d.cred != nil:
		uid = d.cred.uid
		attr.Credential = &syscall.Credential{Uid: d.cred.uid, Gid: d.cred.gid, Groups: []uint32{}}
	case d.users != nil:
		if uid, err = d.users.uid(t.App); err != nil {
			return supervisor.Handle{}, fmt.Errorf("start instance %s: %w", id, err)
		}
		tmp, err := d.appDirs(t.App, t.Dir, uid)
		if err != nil {
			return supervisor.Handle{}, fmt.Errorf("start instance %s: %w", id, err)
		}
		if d.mountNS && !underTmp(t.Dir) {
			// The app init mounts tmp on /tmp, switches to uid and execs
			// path (isolate.go).
			attr.Cloneflags = syscall.CLONE_NEWNS
			args = append([]string{initName, tmp, strconv.FormatUint(uint64(uid), 10), strconv.FormatUint(uint64(uid), 10), path}, t.Command...)
			path = "/proc/self/exe"
		} else {
			env["TMPDIR"] = tmp
			attr.Credential = &syscall.Credential{Uid: uid, Gid: uid, Groups: []uint32{}}
		}
	}
	if d.cg != nil {
		cgf, err := d.cg.prepare(id, t.Resources)
		if err != nil {
			return supervisor.Handle{}, fmt.Errorf("start instance %s: %w", id, err)
		}
		defer cgf.Close()
		attr.UseCgroupFD = true
		attr.CgroupFD = int(cgf.Fd())
	}
	cmd := &exec.Cmd{
		Path:        path,
		Args:        args,
		Dir:         t.Dir,
		Env:         envList(env),
		Stdout:      logf,
		Stderr:      logf,
		SysProcAttr: attr,
	}
	if err := cmd.Start(); err != nil {
		who := ""
		if d.cred != nil || d.users != nil {
			who = " as uid " + strconv.FormatUint(uint64(uid), 10)
		}
		return supervisor.Handle{}, fmt.Errorf("start instance %s: %w: %q in release directory %s%s: %w", id, ErrCommand, t.Command[0], t.Dir, who, err)
	}
	pid := cmd.Process.Pid
	// Until the reaper below collects it, the child is at least a zombie,
	// so its stat is there to read.
	st, err := readStat(pid)
	h.PID = pid
	h.StartedAt = startTimeOrNow(st, err)
	if err == nil {
		h.Ref = startRef(st.startTicks, uid)
	}
	c := &child{pid: pid, id: id, cmd: cmd, done: make(chan struct{})}
	d.mu.Lock()
	d.children[id] = c
	d.mu.Unlock()
	go d.reap(c)
	d.log.Debug("instance started", "app", t.App, "release", t.Release, "instance", id, "pid", pid, "endpoint", h.Endpoint)
	return h, nil
}

// startTimeOrNow is the process's start time, or now when it cannot be
// read (which only happens when /proc is not what Linux makes it).
func startTimeOrNow(st procStat, err error) time.Time {
	if err == nil {
		if t, err := startTime(st.startTicks); err == nil {
			return t
		}
	}
	return time.Now().UTC()
}

// instanceEnv is the whole environment of an instance: a minimal base, the
// template's env, then what skiff itself sets, which the template cannot
// override because Recover and the probes depend on it.
func instanceEnv(node, id string, t instance.Template, port int) map[string]string {
	env := map[string]string{
		"PATH": basePath,
		"HOME": t.Dir,
		"LANG": "C.UTF-8",
	}
	maps.Copy(env, t.Env)
	env["PORT"] = strconv.Itoa(port)
	env["SKIFF_APP"] = t.App
	env["SKIFF_RELEASE"] = strconv.Itoa(t.Release)
	env["SKIFF_INSTANCE"] = id
	env["SKIFF_NODE"] = node
	return env
}

func envList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// resolveCommand finds the program to run: a path with a slash is taken
// relative to the release directory, a bare name is looked up in the
// instance's PATH (not skiff's).
func resolveCommand(t instance.Template, pathEnv string) (string, error) {
	if len(t.Command) == 0 || t.Command[0] == "" {
		return "", fmt.Errorf("%w: release %d of %s has no command", ErrCommand, t.Release, t.App)
	}
	if fi, err := os.Stat(t.Dir); err != nil || !fi.IsDir() {
		if err == nil {
			err = fmt.Errorf("not a directory")
		}
		return "", fmt.Errorf("%w: release directory %q of %s release %d: %w", ErrCommand, t.Dir, t.App, t.Release, err)
	}
	name := t.Command[0]
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(t.Dir, p)
		}
		fi, err := os.Stat(p)
		switch {
		case err != nil:
			return "", fmt.Errorf("%w: command %q not found in release directory %s: %w", ErrCommand, name, t.Dir, err)
		case fi.IsDir():
			return "", fmt.Errorf("%w: command %q in release directory %s is a directory", ErrCommand, name, t.Dir)
		case fi.Mode()&0o111 == 0:
			return "", fmt.Errorf("%w: command %q in release directory %s is not executable (chmod +x it)", ErrCommand, name, t.Dir)
		}
		return p, nil
	}
	for _, dir := range filepath.SplitList(pathEnv) {
		// Relative PATH entries would depend on the working directory.
		if !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%w: command %q not found in PATH %s (release directory %s; write ./%s for a program in it)", ErrCommand, name, pathEnv, t.Dir, name)
}

// freePort picks a loopback port the kernel says is free now.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
