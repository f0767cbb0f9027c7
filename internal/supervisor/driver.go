package supervisor

import (
	"context"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
)

// Driver is the instance level of a runtime: it knows how to start, stop,
// watch and find again one instance, and nothing of sets, probes or
// restarts, which the supervisor owns. The process runtime implements it
// now; Docker implements it next.
type Driver interface {
	// Capabilities tells the supervisor what this driver can do.
	Capabilities() Capabilities
	// Start runs one instance of t under id. It returns once the instance
	// is running (not necessarily listening).
	Start(ctx context.Context, id string, t instance.Template) (Handle, error)
	// Wait blocks until the instance exits or ctx ends, and says how it
	// ended. It works for instances found by Recover as well.
	Wait(ctx context.Context, h Handle) (instance.Exit, error)
	// Stop asks the instance to end (SIGTERM to its process group), waits up
	// to grace, then kills it. Stopping an instance that is gone is no error.
	Stop(ctx context.Context, h Handle, grace time.Duration) error
	// Stats reads the instance's current resource use.
	Stats(ctx context.Context, h Handle) (Stats, error)
	// LogPath is the file the instance's stdout and stderr go to.
	LogPath(h Handle) string
	// Recover finds every instance this node started that still runs,
	// after a restart of the control plane.
	Recover(ctx context.Context) ([]Handle, error)
	// Cleanup removes what the driver kept for an instance that is gone
	// for good (its log file stays until the log collector is done).
	Cleanup(ctx context.Context, h Handle) error
}

// Capabilities describe a driver.
type Capabilities struct {
	// Name of the runtime, e.g. "process" or "docker".
	Name string
	// ExitCodeOnRecover is true when Wait reports the real exit code of a
	// recovered instance (containers); false when it cannot (processes that
	// are no longer our children).
	ExitCodeOnRecover bool
	// Limits is true when Resources are enforced.
	Limits bool
}

// Handle identifies one running instance to its driver.
type Handle struct {
	ID      string `json:"id"`
	App     string `json:"app"`
	Release int    `json:"release"`
	// Endpoint is host:port where the instance listens, on loopback.
	Endpoint string `json:"endpoint"`
	// Ports are where the instance's other published ports are reached,
	// by the port inside it (see instance.Instance.Ports); nil for a
	// process instance. The supervisor reports them as they are.
	Ports map[int]string `json:"ports,omitempty"`
	// PID of the process (group leader) or of the container's init.
	PID int `json:"pid,omitempty"`
	// StartedAt is the start time as the kernel or engine records it, used
	// to tell a recovered instance from a reused PID.
	StartedAt time.Time `json:"started_at"`
	// Ref is the driver's own reference (a container ID).
	Ref string `json:"ref,omitempty"`
}

// Stats is resource use at one moment.
type Stats struct {
	// CPUSeconds is the total CPU time used so far.
	CPUSeconds float64
	// MemoryBytes is the resident memory.
	MemoryBytes int64
}
