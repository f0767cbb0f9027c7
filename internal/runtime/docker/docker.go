// Package docker is the runtime driver that runs instances as Docker
// containers on this machine, through the Engine API (never the docker
// CLI). The supervisor keeps sets, probes and restarts over it exactly as
// over the process driver.
//
// Each instance is one container named skiff-<node>-<instance>, labelled
// skiff.node, skiff.app, skiff.release and skiff.instance, attached to the
// "skiff" network with its app's name as a network alias (so apps reach
// each other as http://<app>:<port>), its port published on 127.0.0.1 at
// an ephemeral host port, which is the instance's endpoint, and the
// template's other ports (targets of tcp: forwards) likewise, reported in
// Handle.Ports. Named volumes, a read-only root and dropped capabilities
// come from the template too, which the supervisor keeps for the life of
// the release. Containers have no restart policy: restarts are the
// supervisor's, with its backoff.
//
// Containers outlive the skiff server. Their output goes to Docker's
// json-file log, and a goroutine per container copies it into the
// instance's log file (LogPath), recording how far it got; after a restart
// of skiff or of the engine the copy resumes from there (with `since`), so
// a line may appear twice but none is lost. Recover finds this node's
// containers by label.
package docker

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/skiff-sh/skiff/internal/supervisor"
)

// Labels put on every container, volume and image skiff makes.
const (
	LabelNode     = "skiff.node"
	LabelApp      = "skiff.app"
	LabelRelease  = "skiff.release"
	LabelInstance = "skiff.instance"
)

// RefPrefix starts the Ref of every Handle this driver makes; the rest is
// the container ID.
const RefPrefix = "container:"

// DefaultNetwork is the network apps share.
const DefaultNetwork = "skiff"

var (
	// ErrBadOptions means Options are missing something required.
	ErrBadOptions = errors.New("invalid docker driver options")
	// ErrBadTemplate means a template cannot run as a container.
	ErrBadTemplate = errors.New("cannot run as a container")
	// ErrGone means the instance's container no longer exists or runs.
	ErrGone = errors.New("instance container is gone")
	// ErrPortInUse means the engine could not publish a port.
	ErrPortInUse = errors.New("port already in use")
)

// Options configure a Driver.
type Options struct {
	// Engine is the Docker Engine to use. Required.
	Engine *Engine
	// StateDir is where instance logs live, as <StateDir>/logs/<id>.log,
	// next to the process driver's. Required.
	StateDir string
	// NodeID marks the containers this server starts (label skiff.node).
	// Required.
	NodeID string
	// Network is the network apps share. Default DefaultNetwork.
	Network string
	// Logger receives the driver's own messages. Default slog.Default().
	Logger *slog.Logger
}

// Driver runs instances as containers. It implements supervisor.Driver.
type Driver struct {
	engine  *Engine
	logDir  string
	nodeID  string
	network string
	log     *slog.Logger

	// netMu serialises making sure the network exists.
	netMu sync.Mutex
	netID string

	mu      sync.Mutex
	copiers map[string]*copier // by container ID
}

var _ supervisor.Driver = (*Driver)(nil)

// New returns a Driver. It does not contact the engine.
func New(opts Options) (*Driver, error) {
	if opts.Engine == nil {
		return nil, fmt.Errorf("new docker driver: %w: Engine is required", ErrBadOptions)
	}
	if opts.StateDir == "" {
		return nil, fmt.Errorf("new docker driver: %w: StateDir is required", ErrBadOptions)
	}
	if !validName(opts.NodeID) {
		return nil, fmt.Errorf("new docker driver: %w: NodeID %q must be 1-64 letters, digits, '.', '_' or '-'", ErrBadOptions, opts.NodeID)
	}
	if opts.Network == "" {
		opts.Network = DefaultNetwork
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	logDir := filepath.Join(opts.StateDir, "logs")
	if err := os.MkdirAll(logDir, 0o750); err != nil {
		return nil, fmt.Errorf("new docker driver: create log directory: %w", err)
	}
	return &Driver{
		engine:  opts.Engine,
		logDir:  logDir,
		nodeID:  opts.NodeID,
		network: opts.Network,
		log:     log.With("component", "docker-driver", "node", opts.NodeID),
		copiers: make(map[string]*copier),
	}, nil
}

// Capabilities says what this driver can do: a container's exit code and
// OOM kill are known even after adoption, and limits are always enforced.
func (d *Driver) Capabilities() supervisor.Capabilities {
	return supervisor.Capabilities{Name: "docker", ExitCodeOnRecover: true, Limits: true}
}

// LogPath is where the instance's stdout and stderr are copied to.
func (d *Driver) LogPath(h supervisor.Handle) string {
	return filepath.Join(d.logDir, h.ID+".log")
}

// posPath records how far the copy of an instance's output got.
func (d *Driver) posPath(id string) string {
	return filepath.Join(d.logDir, id+".logpos")
}

// VolumeName is the Docker volume that holds volume name of app.
func VolumeName(app, name string) string { return "skiff-" + app + "-" + name }

// containerName is unique per node and instance, so a second Start of an
// instance finds the first one's container.
func (d *Driver) containerName(id string) string { return "skiff-" + d.nodeID + "-" + id }

// containerID reads the container ID from a Handle's Ref.
func containerID(h supervisor.Handle) (string, error) {
	id, ok := strings.CutPrefix(h.Ref, RefPrefix)
	if !ok || id == "" {
		return "", fmt.Errorf("instance %s: %w: handle names no container (ref %q)", h.ID, ErrGone, h.Ref)
	}
	return id, nil
}

// IsHandle tells whether h was made by this driver.
func IsHandle(h supervisor.Handle) bool { return strings.HasPrefix(h.Ref, RefPrefix) }

// validName says whether s is safe in a container name and a label.
func validName(s string) bool {
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
