// Package process is the runtime driver that runs instances as plain
// processes on this machine: the default runtime of a one-host skiff.
//
// Each instance is the leader of its own process group, listens on a
// loopback port given in $PORT and writes stdout and stderr straight into
// its own log file. Nothing ties it to the skiff server's life: when the
// server stops or crashes, instances keep running and keep logging, and the
// next server finds them again by the SKIFF_NODE and SKIFF_INSTANCE
// variables in their environment (Recover). Those variables are only a
// claim any process can make: the supervisor adopts a found process only
// when its pid, start time and uid (the Handle's PID and Ref) are the ones
// it recorded when this driver started it.
//
// As root, each app runs as a user of its own with a private /tmp
// (isolate.go, users.go).
//
// An instance is its whole process group: when the group leader exits, the
// driver kills what is left of the group, so a restarted instance never
// finds its port held by a stray child of its previous run.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

// Options configure a Driver.
type Options struct {
	// StateDir is where instance logs live, as <StateDir>/logs/<id>.log.
	// Required.
	StateDir string
	// NodeID marks the processes this server starts (env SKIFF_NODE).
	// Recover and Stop never touch a process of another node, so several
	// servers can share a machine. Required.
	NodeID string
	// User runs every instance as this one user. Default "": as root, each
	// app runs as a user of its own (see AppUIDBase), with its own release
	// tree and /tmp; otherwise instances run as the current user. A user
	// that does not exist, or root, is an error.
	User string
	// Logger receives the driver's own messages. Default slog.Default().
	Logger *slog.Logger
}

// Driver runs instances as process groups. It implements supervisor.Driver.
type Driver struct {
	stateDir string
	nodeID   string
	log      *slog.Logger
	// cred is the one user every instance runs as (Options.User); nil
	// with users set runs each app as its own user, nil without users as
	// the current user.
	cred *credential
	// users gives each app its own uid; nil unless skiff runs as root
	// without Options.User.
	users *appUsers
	// mountNS tells whether instances get a mount namespace of their own
	// (a private /tmp); without it they get $TMPDIR.
	mountNS bool
	// cg places instances in cgroups with their limits; nil without limits.
	cg *cgroups

	mu sync.Mutex
	// children holds, per instance id, the last process this Driver
	// started for it; only those are reaped by this Driver, every other
	// instance (found by Recover) is watched through a pidfd.
	children map[string]*child
}

var _ supervisor.Driver = (*Driver)(nil)

var (
	// ErrBadOptions means Options are missing something required.
	ErrBadOptions = errors.New("invalid process driver options")
	// ErrCommand means an instance's command cannot be run.
	ErrCommand = errors.New("cannot run command")
	// ErrGone means the instance's process no longer runs.
	ErrGone = errors.New("instance process is gone")
)

// New returns a Driver. It checks once whether instances can get resource
// limits (cgroup v2) and logs why not when they cannot.
func New(opts Options) (*Driver, error) {
	if opts.StateDir == "" {
		return nil, fmt.Errorf("new process driver: %w: StateDir is required", ErrBadOptions)
	}
	if !validNodeID(opts.NodeID) {
		return nil, fmt.Errorf("new process driver: %w: NodeID %q must be 1-64 letters, digits, '.', '_' or '-'", ErrBadOptions, opts.NodeID)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "process-driver", "node", opts.NodeID)
	cred, err := lookupCredential(opts.User)
	if err != nil {
		return nil, fmt.Errorf("new process driver: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(opts.StateDir, "logs"), 0o750); err != nil {
		return nil, fmt.Errorf("new process driver: create log directory: %w", err)
	}
	var users *appUsers
	mountNS := false
	if opts.User == "" && os.Geteuid() == 0 {
		if users, err = openAppUsers(opts.StateDir); err != nil {
			return nil, fmt.Errorf("new process driver: %w", err)
		}
		if err := canMountNamespace(); err != nil {
			log.Warn("apps get no private /tmp of their own, only $TMPDIR", "reason", err.Error())
		} else {
			mountNS = true
		}
	} else if opts.User == "" {
		log.Info("apps run as skiff's own user: run skiff as root to give each app a user of its own")
	}
	cg, err := openCgroups(defaultCgroupRoot, opts.NodeID, []string{"cpu", "memory"})
	if err != nil {
		log.Info("instances run without resource limits", "reason", err.Error())
		cg = nil
	}
	return &Driver{
		stateDir: opts.StateDir,
		nodeID:   opts.NodeID,
		log:      log,
		cred:     cred,
		users:    users,
		mountNS:  mountNS,
		cg:       cg,
		children: make(map[string]*child),
	}, nil
}

// Capabilities says what this driver can do.
func (d *Driver) Capabilities() supervisor.Capabilities {
	return supervisor.Capabilities{Name: "process", ExitCodeOnRecover: false, Limits: d.cg != nil}
}

// LogPath is where the instance's stdout and stderr go.
func (d *Driver) LogPath(h supervisor.Handle) string {
	return filepath.Join(d.stateDir, "logs", h.ID+".log")
}

// Cleanup forgets the instance and removes its cgroup. Its log file stays
// for the log collector.
func (d *Driver) Cleanup(ctx context.Context, h supervisor.Handle) error {
	d.mu.Lock()
	if c := d.children[h.ID]; c != nil && c.pid == h.PID {
		delete(d.children, h.ID)
	}
	d.mu.Unlock()
	if d.cg != nil {
		if err := d.cg.remove(h.ID); err != nil {
			return fmt.Errorf("cleanup instance %s: %w", h.ID, err)
		}
	}
	return nil
}

// validNodeID says whether a node id is safe in an environment variable
// and a cgroup name.
func validNodeID(s string) bool {
	if s == "" || len(s) > 64 || s == "." || s == ".." {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// credential is a user to run instances as.
type credential struct {
	name     string
	uid, gid uint32
}

// lookupCredential resolves Options.User.
func lookupCredential(name string) (*credential, error) {
	if name == "" {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("%w: user %q to run instances as: %w (create the user or set another)", ErrBadOptions, name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%w: user %q has a non-numeric uid %q or gid %q", ErrBadOptions, name, u.Uid, u.Gid)
	}
	if uid == 0 {
		return nil, fmt.Errorf("%w: user %q is root; apps never run as root", ErrBadOptions, name)
	}
	if uint32(uid) == uint32(os.Geteuid()) {
		// Already that user: no switch needed (and none allowed without root).
		return nil, nil
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("%w: running instances as user %q needs root; run skiff as root or leave User empty", ErrBadOptions, name)
	}
	return &credential{name: name, uid: uint32(uid), gid: uint32(gid)}, nil
}

// exitNow is how an exit looks when only its time is known.
func exitNow() instance.Exit {
	return instance.Exit{Code: -1, At: time.Now()}
}
