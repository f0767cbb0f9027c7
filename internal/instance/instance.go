// Package instance holds the vocabulary shared by every runtime and the
// controllers that drive them: what to run (a Template), what runs (an
// Instance) and the running replicas of one release (a Set).
//
// It knows nothing else of skiff, so the supervisor, the Kubernetes runtime
// and the rollout controller can all speak it without importing each other.
package instance

import (
	"errors"
	"time"
)

// ErrCannotRun marks a template a runtime will never run as it is (a
// command-only app on a cluster, say): retrying cannot help, so the
// release fails with the runtime's reason.
var ErrCannotRun = errors.New("the runtime cannot run this release")

// State is where an instance stands in its life.
type State string

const (
	// Starting: started, not yet passed its readiness probe.
	Starting State = "starting"
	// Ready: passing its readiness probe; may receive traffic.
	Ready State = "ready"
	// Unready: was ready, now failing readiness; gets no traffic.
	Unready State = "unready"
	// Draining: chosen to leave; gets no new traffic, still running.
	Draining State = "draining"
	// CrashLoop: exited and waiting out its restart backoff.
	CrashLoop State = "crashloop"
	// Gone: stopped for good.
	Gone State = "gone"
)

// Template is everything a runtime needs to run instances of one release.
// It is immutable for the life of the release.
type Template struct {
	App     string
	Release int
	// Command is the argv to run. A spec's string command arrives here as
	// ["/bin/sh", "-c", cmd].
	Command []string
	// Dir is the release's unpacked artifact; process instances run in it.
	Dir string
	// Image is the container image (digest-pinned); empty for process apps.
	Image string
	// Port is where the app listens. For process apps 0 means "pick a free
	// loopback port and pass it in $PORT".
	Port int
	Env  map[string]string
	// Health says how readiness and liveness are probed.
	Health Health
	// Resources are limits, enforced where the runtime can.
	Resources Resources

	// The fields below apply to containers only; the process runtime
	// ignores them.

	// Ports are the container's other ports to publish besides Port (the
	// targets of the app's tcp: forwards), each on a loopback address the
	// runtime reports in Instance.Ports.
	Ports []int
	// Volumes are named volumes mounted into every instance, kept across
	// releases.
	Volumes []Volume
	// ReadOnly mounts the root filesystem read-only.
	ReadOnly bool
	// CapDrop lists Linux capabilities to drop ("ALL" drops every one).
	CapDrop []string
}

// Volume is a named volume of an app mounted into its instances.
type Volume struct {
	// Name is the spec's volume name; the runtime derives its own name for
	// it from the app's.
	Name string
	// Path is where it is mounted, absolute.
	Path string
	// SizeBytes is the space to reserve where the runtime can (a
	// cluster's claim); 0 means the runtime's default. Docker ignores it.
	SizeBytes int64
}

// Health configures probes. Exactly one of Path or TCP is in effect; the
// zero value probes TCP.
type Health struct {
	// Path is an HTTP path probed with GET; 2xx and 3xx pass.
	Path string
	// TCP probes by opening a connection to the port.
	TCP bool
	// Interval between probes. Default 2s.
	Interval time.Duration
	// Timeout of one probe. Default 1s.
	Timeout time.Duration
	// Threshold is how many consecutive failures make a ready instance
	// unready. Default 3.
	Threshold int
	// LivenessThreshold is how many consecutive failures, after the
	// instance was once ready, make the supervisor restart it. 0 means the
	// default, 6; a negative value turns liveness restarts off.
	LivenessThreshold int
	// ReadyTimeout is how long a new release's instances may take to
	// become ready before its deploy fails. Default 60s.
	ReadyTimeout time.Duration
}

// Resources are per-instance limits. Zero means unlimited.
type Resources struct {
	// CPU in cores (0.5 = half a core).
	CPU float64
	// MemoryBytes is the memory limit in bytes.
	MemoryBytes int64
}

// Exit describes how an instance's last run ended.
type Exit struct {
	// Code is the exit status, or -1 when unknown (an adopted process whose
	// status only its former parent could read) or killed by a signal.
	Code int `json:"code"`
	// Signal names the signal that killed it, if any.
	Signal string    `json:"signal,omitempty"`
	At     time.Time `json:"at"`
	// OOM is true when the runtime killed it for exceeding its memory.
	OOM bool `json:"oom,omitempty"`
	// LogTail holds the last lines it wrote.
	LogTail []string `json:"log_tail,omitempty"`
}

// Instance is one replica as a runtime observes it.
type Instance struct {
	ID      string `json:"id"`
	App     string `json:"app"`
	Release int    `json:"release"`
	// Endpoint is host:port where the edge reaches it (loopback on one host).
	Endpoint string `json:"endpoint"`
	// Ports are where the edge reaches the instance's other ports, by the
	// port the app listens on inside it (a container's port published on
	// 127.0.0.1): TCP forwarding to a target port uses them. Nil for a
	// process instance, whose only port is Endpoint.
	Ports map[int]string `json:"ports,omitempty"`

	State     State     `json:"state"`
	PID       int       `json:"pid,omitempty"`
	StartedAt time.Time `json:"started_at"`
	Restarts  int       `json:"restarts"`
	LastExit  *Exit     `json:"last_exit,omitempty"`
	// NextStart is when a crash-looping instance is started again.
	NextStart time.Time `json:"next_start,omitzero"`
	// Message says why it is in its state, in words for a user.
	Message string `json:"message,omitempty"`
}

// Set is the running replicas of one release.
type Set struct {
	App     string `json:"app"`
	Release int    `json:"release"`
	// Size is the number of instances the runtime keeps running.
	Size      int        `json:"size"`
	Instances []Instance `json:"instances"`
	// Published, when set, says where the runtime also lists the set's
	// ready instances, so that an edge can follow them without the
	// control plane. Nil when the runtime publishes nothing.
	Published *Published `json:"published,omitempty"`
}

// Published names a list of a set's ready instances that lives outside
// skiff: on Kubernetes, the EndpointSlices of a release's headless
// Service, which name each pod (the instance's ID) and its address.
type Published struct {
	// Service is the Service's name, in the runtime's namespace.
	Service string `json:"service"`
	// Port is where each instance listens for the app's requests.
	Port int `json:"port"`
}

// Ready counts the set's instances that may receive traffic.
func (s Set) Ready() int {
	n := 0
	for _, in := range s.Instances {
		if in.State == Ready {
			n++
		}
	}
	return n
}
