// Package spec is skiff.yaml: the types of an app's spec, parsing them
// with file:line:column positions, defaults, validation and the JSON
// Schema editors use to complete and check the file.
//
// It knows nothing else of skiff, so the CLI (to check a file before
// uploading it), the API (to accept it) and tests all use the same rules.
//
// Parsing walks the YAML syntax tree instead of decoding into structs,
// because a strict decoder stops at the first problem while a user fixing
// a file wants every problem at once. Parse reports type errors and
// validation errors of the whole file together, each with its position.
//
// Doc comments on the fields of the types in this file double as the
// descriptions in the JSON Schema (see schema.go), so they are written for
// someone editing skiff.yaml.
package spec

// Spec is one app's skiff.yaml.
type Spec struct {
	// The app's name: a DNS label of 1-32 lowercase letters, digits and
	// '-', starting and ending with a letter or digit. The app is served
	// at its name under skiff's domain, e.g. hello.club.example.com.
	// Required.
	Name string `json:"name"`
	// How to start the app: a string runs under /bin/sh -c (so $PORT and
	// pipes work), a list is the program and its arguments, run directly.
	// Required.
	Command Command `json:"command,omitempty"`
	// The TCP port the app listens on, 1-65535. Leave it out to get a free
	// port passed in $PORT.
	Port int `json:"port,omitempty"`
	// Environment variables for the app. Names use letters, digits and '_'
	// and do not start with a digit; PORT and names starting with SKIFF_
	// are set by skiff. Values are strings: quote numbers and booleans.
	Env map[string]string `json:"env,omitempty"`
	// How many instances to run, 0-100. Default 1.
	Replicas *int `json:"replicas,omitempty"`
	// How to tell that an instance is ready and alive. Default: a TCP
	// connection to the port, with the defaults of each setting.
	Health *Health `json:"health,omitempty"`
	// Extra hostnames the app is served at besides its name under skiff's
	// domain: lowercase DNS names, optionally starting with "*." for every
	// subdomain; no scheme, port or path.
	Hosts []string `json:"hosts,omitempty"`
	// Limits for each instance. Default: none.
	Resources *Resources `json:"resources,omitempty"`
	// TCP ports the edge forwards to the app's instances (a game server,
	// a database), each published as a DNS SRV record when srv is given.
	TCP []TCPPort `json:"tcp,omitempty"`
	// A container image to run, such as nginx:1.27 or
	// ghcr.io/club/hello@sha256:...; the app then runs as Docker
	// containers. Resolved to its image ID when deployed, so a rollback
	// runs the same bits even if the tag moved. Cannot be combined with
	// build. With image or build, port is required and command is
	// optional: it overrides the image's command, and a string runs under
	// /bin/sh -c inside the container (the image must have /bin/sh).
	Image string `json:"image,omitempty"`
	// A directory, relative to skiff.yaml and uploaded with it, to build a
	// container image from with its Dockerfile, on the server at each
	// deploy; the output is shown by skiff deploy. Cannot be combined with
	// image.
	Build string `json:"build,omitempty"`
	// The Dockerfile used with build, relative to the build directory.
	// Default Dockerfile.
	Dockerfile string `json:"dockerfile,omitempty"`
	// Named volumes of a container app, mounted at their paths in every
	// instance and kept across releases; removed when the app is
	// destroyed.
	Volumes []Volume `json:"volumes,omitempty"`
	// Mount a container app's root filesystem read-only (volumes stay
	// writable), as Compose's read_only. Default false.
	ReadOnly bool `json:"read_only,omitempty"`
	// Linux capabilities to drop from a container app, as Compose's
	// cap_drop, e.g. [ALL] or [NET_RAW, MKNOD]. Default: none dropped
	// beyond Docker's defaults.
	CapDrop []string `json:"cap_drop,omitempty"`

	// How a new release replaces the running one: rolling (default),
	// blue-green or canary, with their settings.
	Deploy *Deploy `json:"deploy,omitempty"`
	// How the edge serves the app's HTTP traffic: balancing, body limit,
	// h2c to the instances.
	HTTP *HTTP `json:"http,omitempty"`

	// The fields below are recognised so that a spec written for a later
	// skiff fails with "not supported yet" instead of being misread.

	// Not supported yet: autoscaling bounds and targets.
	Autoscale map[string]any `json:"autoscale,omitempty"`
	// Not supported yet: secrets passed to the app.
	Secrets []any `json:"secrets,omitempty"`

	// file names the spec's source in errors; pos holds where each field
	// and element was written (see Pos), so that errors found later, by
	// Validate or by the server, can point into the file.
	file string
	pos  map[string]position
}

// Health says how instances are probed. An instance receives traffic once
// a probe passes, stops receiving it after threshold failures in a row, and
// is restarted after liveness_threshold failures in a row.
type Health struct {
	// An HTTP path probed with GET, starting with "/"; 2xx and 3xx pass.
	// Leave it out to probe by opening a TCP connection.
	Path string `json:"path,omitempty"`
	// Probe by opening a TCP connection to the port. The default when no
	// path is given; cannot be combined with path.
	TCP bool `json:"tcp,omitempty"`
	// Time between probes, 100ms-1h. Default 2s.
	Interval Duration `json:"interval,omitempty"`
	// How long one probe may take; at most interval. Default 1s, or the
	// interval if that is shorter.
	Timeout Duration `json:"timeout,omitempty"`
	// Failed probes in a row that take an instance out of traffic, 1-100.
	// Default 3.
	Threshold int `json:"threshold,omitempty"`
	// Failed probes in a row that restart an instance that was ready,
	// 0-100; 0 turns restarts on failed probes off. Default 6.
	LivenessThreshold *int `json:"liveness_threshold,omitempty"`
	// How long a new release's instances may take to become ready before
	// the deploy fails, 1s-1h. Default 60s.
	ReadyTimeout Duration `json:"ready_timeout,omitempty"`
}

// TCPPort is a TCP port on the edge whose connections are forwarded to
// the app's ready instances, balanced over them and drained on deploys.
type TCPPort struct {
	// The edge's public TCP port clients connect to, 1-65535. Required.
	// Only one app may use a port, unless every app on it uses tls:
	// passthrough with different hosts.
	Port int `json:"port"`
	// The port inside the instance that connections go to, 1-65535.
	// Default: the app's port. A process app listens on one port only
	// (port:, or $PORT when port: is left out), so for it target may only
	// repeat port:.
	Target int `json:"target,omitempty"`
	// The service name to publish as a DNS SRV record
	// (_<srv>._tcp.<host>), e.g. minecraft: 1-15 lowercase letters, digits
	// and '-', starting with a letter and not ending with '-'.
	SRV string `json:"srv,omitempty"`
	// passthrough: route each connection by the server name its TLS
	// ClientHello asks for (SNI) to the app whose hosts list it, without
	// terminating TLS, so several apps can share one port. Leave it out to
	// forward every connection on the port to this app.
	TLS string `json:"tls,omitempty"`
	// With tls: passthrough, the server names routed to this app:
	// lowercase DNS names, optionally starting with "*." for every
	// subdomain. Required with tls: passthrough, not allowed without it.
	Hosts []string `json:"hosts,omitempty"`
}

// Volume is a named volume of a container app.
type Volume struct {
	// The volume's name, a DNS label: 1-63 lowercase letters, digits and
	// '-'. The same name in a later release is the same data. Required.
	Name string `json:"name"`
	// Where it is mounted in the container: an absolute path. Required.
	Path string `json:"path"`
	// The space a cluster reserves for it (skiff server --runtime
	// kubernetes, where it is a PersistentVolumeClaim): a number with a
	// suffix such as 1Gi, 10Gi (powers of 1024) or 500M (powers of 1000),
	// at least 1Mi. A claim can grow, if its storage class allows, but
	// never shrink: a smaller size later keeps the larger claim. Docker's
	// volumes have no size, so on one host it is not enforced. Default
	// 1Gi.
	Size Quantity `json:"size,omitempty"`
}

// Resources are per-instance limits, enforced where the runtime can.
type Resources struct {
	// CPU limit in cores, more than 0 and at most 64: 0.5 or "500m" is
	// half a core. Default: unlimited.
	CPU float64 `json:"cpu,omitempty"`
	// Memory limit: bytes, or a number with a suffix such as 256Mi, 1Gi
	// (powers of 1024), 512M (powers of 1000) or 1e9; at least 4Mi.
	// Default: unlimited.
	Memory Quantity `json:"memory,omitempty"`
}

// MemoryBytes is the memory limit in bytes, 0 when none is set. It is
// meant for a validated spec: a quantity that does not parse counts as no
// limit, which Validate would have reported.
func (r *Resources) MemoryBytes() int64 {
	if r == nil || r.Memory == "" {
		return 0
	}
	n, err := r.Memory.Bytes()
	if err != nil {
		return 0
	}
	return n
}

// position is a 1-based line and column in the source file.
type position struct {
	line, col int
}

// Pos says where the field or element at path was written, for errors
// only the server finds (such as "hosts[1]" being served by another app).
// Paths join field names with '.' and index lists with [i]: "port",
// "health.interval", "env.LOG_LEVEL", "hosts[1]", "command[0]"; "" is the
// document itself. It returns 0, 0 when the path was not written or the
// spec did not come from Parse.
func (s *Spec) Pos(path string) (line, col int) {
	p, ok := s.pos[path]
	if !ok {
		return 0, 0
	}
	return p.line, p.col
}

// File is the name the spec was parsed under, as used in its errors.
func (s *Spec) File() string {
	return s.file
}

// given reports whether path was written in the source, including
// explicit zero values such as "replicas: 0" that the Go value alone
// cannot tell from an absent field.
func (s *Spec) given(path string) bool {
	_, ok := s.pos[path]
	return ok
}
