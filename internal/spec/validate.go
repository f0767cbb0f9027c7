package spec

import (
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// Limits that validation enforces and the JSON Schema repeats.
const (
	MaxNameLen   = 32
	MaxReplicas  = 100
	MaxThreshold = 100
	MaxCPU       = 64
	MinMemory    = 4 << 20
	// MinVolumeSize is the smallest size a volume may ask for.
	MinVolumeSize = 1 << 20

	minInterval     = 100 * time.Millisecond
	maxInterval     = time.Hour
	minReadyTimeout = time.Second
	maxReadyTimeout = time.Hour
)

var (
	namePattern   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	envKeyPattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	labelPattern  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
)

// Validate checks the spec's values and how they fit together and reports
// every problem as *Errors, positioned where Parse found each field. It
// judges the spec as written, before Defaults: a field left out is judged
// by its default (a timeout must not exceed the default interval), and an
// explicit zero where zero is not allowed is reported. Parse already calls
// it; the API calls it for specs that come from elsewhere.
func (s *Spec) Validate() error {
	errs := s.validate()
	if len(errs) == 0 {
		return nil
	}
	sortErrors(errs)
	return &Errors{List: errs}
}

// validator collects the problems of one spec.
type validator struct {
	s    *Spec
	errs []*Error
}

func (v *validator) errorf(path, format string, args ...any) {
	v.errs = append(v.errs, v.s.ErrorAt(path, fmt.Sprintf(format, args...)))
}

// missing reports a required field that is absent, at the start of the
// document since the field has no place of its own.
func (v *validator) missing(path, msg string) {
	e := v.s.ErrorAt("", msg)
	e.Path = path
	v.errs = append(v.errs, e)
}

func (s *Spec) validate() []*Error {
	v := &validator{s: s}
	v.name()
	v.command()
	if s.Port < 0 || s.Port > 65535 {
		v.errorf("port", "must be between 1 and 65535, got %d (leave it out to get a free port in $PORT)", s.Port)
	}
	v.env()
	if r := s.Replicas; r != nil {
		if *r < 0 {
			v.errorf("replicas", "must be >= 0, got %d", *r)
		} else if *r > MaxReplicas {
			v.errorf("replicas", "must be <= %d, got %d", MaxReplicas, *r)
		}
	}
	if s.Health != nil {
		v.health(s.Health)
	}
	v.hosts()
	if s.Resources != nil {
		v.resources(s.Resources)
	}
	v.tcp()
	v.container()
	v.deploy()
	v.http()
	v.unsupported()
	return v.errs
}

// unsupported reports fields not supported yet that a spec built in Go or
// decoded from JSON has set; Parse reports them while decoding and never
// sets them.
func (v *validator) unsupported() {
	s := v.s
	set := map[string]bool{
		"autoscale": s.Autoscale != nil,
		"secrets":   s.Secrets != nil,
	}
	for _, f := range unsupportedFields {
		if set[f] {
			v.errorf(f, "not supported yet")
		}
	}
}

func (v *validator) name() {
	name := v.s.Name
	switch {
	case name == "":
		if v.s.given("name") {
			v.errorf("name", "must not be empty: give the app a name such as hello")
		} else {
			v.missing("name", "required: give the app a name such as hello (lowercase letters, digits and '-')")
		}
	case len(name) > MaxNameLen || !namePattern.MatchString(name):
		v.errorf("name", "%s is not a valid name: use 1-%d lowercase letters, digits and '-', starting and ending with a letter or digit", quote(name), MaxNameLen)
	}
}

func (v *validator) command() {
	c := v.s.Command
	switch {
	case c.IsZero():
		switch {
		case v.s.given("command"):
			v.errorf("command", "must not be empty: give the command that starts the app, e.g. command: ./server")
		case v.s.given("image"), v.s.given("build"), v.s.Image != "", v.s.Build != "":
			// A container runs its image's own command unless told
			// otherwise.
		default:
			v.missing("command", "required for an app without image or build: give the command that starts the app, e.g. command: ./server")
		}
	case c.Shell != "" && len(c.Args) > 0:
		v.errorf("command", "set either a string or a list, not both")
	case c.Shell != "":
		if strings.TrimSpace(c.Shell) == "" {
			v.errorf("command", "must not be blank: give the command that starts the app, e.g. command: ./server")
		}
		if strings.ContainsRune(c.Shell, 0) {
			v.errorf("command", "must not contain a NUL character")
		}
	default:
		if c.Args[0] == "" {
			v.errorf(index("command", 0), "the program must not be empty")
		}
		for i, arg := range c.Args {
			if strings.ContainsRune(arg, 0) {
				v.errorf(index("command", i), "must not contain a NUL character")
			}
		}
	}
}

func (v *validator) env() {
	keys := make([]string, 0, len(v.s.Env))
	for k := range v.s.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		path := join("env", k)
		switch {
		case !envKeyPattern.MatchString(k):
			v.errorf(path, "%s is not a valid variable name: use letters, digits and '_', not starting with a digit", quote(k))
		case k == "PORT":
			v.errorf(path, "PORT is set by skiff to the port the app must listen on: remove it (set port: to choose the port)")
		case strings.HasPrefix(k, "SKIFF_"):
			v.errorf(path, "names starting with SKIFF_ are reserved for skiff: rename it")
		}
		if strings.ContainsRune(v.s.Env[k], 0) {
			v.errorf(path, "must not contain a NUL character")
		}
	}
}

func (v *validator) health(h *Health) {
	if h.Path != "" || v.s.given("health.path") {
		switch {
		case !strings.HasPrefix(h.Path, "/"):
			v.errorf("health.path", "%s must start with \"/\", e.g. /healthz", quote(h.Path))
		case strings.ContainsFunc(h.Path, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
			v.errorf("health.path", "%s must not contain spaces or control characters: escape them, e.g. %%20", quote(h.Path))
		}
	}
	switch {
	case h.TCP && h.Path != "":
		v.errorf("health.tcp", "cannot be combined with path: probe over HTTP (path) or TCP, not both")
	case !h.TCP && h.Path == "" && v.s.given("health.tcp"):
		v.errorf("health.tcp", "false needs a path to probe over HTTP instead, e.g. path: /healthz; leave tcp out to probe over TCP")
	}
	intervalOK := true
	if h.Interval != 0 || v.s.given("health.interval") {
		intervalOK = v.between("health.interval", h.Interval, minInterval, maxInterval)
	}
	if (h.Timeout != 0 || v.s.given("health.timeout")) && intervalOK {
		interval := DefaultInterval
		if h.Interval != 0 {
			interval = h.Interval.Std()
		}
		switch {
		case h.Timeout <= 0:
			v.errorf("health.timeout", "must be more than 0, got %s", shortDuration(h.Timeout.Std()))
		case h.Timeout.Std() > interval:
			v.errorf("health.timeout", "must be at most the interval (%s), got %s", shortDuration(interval), shortDuration(h.Timeout.Std()))
		}
	}
	if h.Threshold != 0 || v.s.given("health.threshold") {
		if h.Threshold < 1 || h.Threshold > MaxThreshold {
			v.errorf("health.threshold", "must be between 1 and %d, got %d", MaxThreshold, h.Threshold)
		}
	}
	if t := h.LivenessThreshold; t != nil && (*t < 0 || *t > MaxThreshold) {
		v.errorf("health.liveness_threshold", "must be between 0 (no restarts) and %d, got %d", MaxThreshold, *t)
	}
	if h.ReadyTimeout != 0 || v.s.given("health.ready_timeout") {
		v.between("health.ready_timeout", h.ReadyTimeout, minReadyTimeout, maxReadyTimeout)
	}
}

// between reports a duration outside [lo, hi].
func (v *validator) between(path string, d Duration, lo, hi time.Duration) bool {
	if d.Std() < lo || d.Std() > hi {
		v.errorf(path, "must be between %s and %s, got %s", shortDuration(lo), shortDuration(hi), shortDuration(d.Std()))
		return false
	}
	return true
}

// shortDuration writes d without the zero units time.Duration.String
// adds: 1h rather than 1h0m0s.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (v *validator) hosts() {
	first := map[string]int{}
	for i, h := range v.s.Hosts {
		path := index("hosts", i)
		if msg := hostProblem(h); msg != "" {
			v.errorf(path, "%s", msg)
			continue
		}
		if j, dup := first[h]; dup {
			v.errorf(path, "%s is listed twice (also at %s): remove one", quote(h), index("hosts", j))
			continue
		}
		first[h] = i
	}
}

// hostProblem says what is wrong with a hostname, or "" when it is fine.
func hostProblem(h string) string {
	q := quote(h)
	switch {
	case h == "":
		return "must not be empty: write a hostname such as app.example.com"
	case strings.Contains(h, "://"):
		bare, _, _ := strings.Cut(h[strings.Index(h, "://")+3:], "/")
		return fmt.Sprintf("%s has a scheme: write only the hostname, e.g. %s", q, bare)
	case strings.Contains(h, "/"):
		return fmt.Sprintf("%s has a path: write only the hostname", q)
	case net.ParseIP(h) != nil || strings.HasPrefix(h, "["):
		return fmt.Sprintf("%s is an IP address: hosts are DNS names such as app.example.com", q)
	case strings.Contains(h, ":"):
		return fmt.Sprintf("%s has a port: write only the hostname; the edge serves it on its own ports", q)
	case h == "*" || h == "*.":
		return fmt.Sprintf("%s is not a valid hostname: a wildcard needs a domain, as in *.example.com", q)
	case strings.ToLower(h) != h:
		return fmt.Sprintf("%s must be lowercase: %s", q, strings.ToLower(h))
	case strings.HasSuffix(h, "."):
		return fmt.Sprintf("%s ends with a dot: write %s", q, strings.TrimSuffix(h, "."))
	case len(h) > 253:
		return fmt.Sprintf("%s is longer than 253 characters", q)
	}
	name := strings.TrimPrefix(h, "*.")
	if strings.Contains(name, "*") {
		return fmt.Sprintf("%s is not a valid hostname: a wildcard may only be the whole first label, as in *.example.com", q)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return fmt.Sprintf("%s is not a valid hostname: it has an empty label (a dot at the start or two in a row)", q)
		}
		if !labelPattern.MatchString(label) {
			return fmt.Sprintf("%s is not a valid hostname: label %s must be 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit", q, quote(label))
		}
	}
	return ""
}

func (v *validator) resources(r *Resources) {
	if r.CPU != 0 || v.s.given("resources.cpu") {
		switch {
		case !(r.CPU > 0):
			v.errorf("resources.cpu", "must be more than 0 cores, got %s", strconv.FormatFloat(r.CPU, 'g', -1, 64))
		case r.CPU > MaxCPU:
			v.errorf("resources.cpu", "must be at most %d cores, got %s", MaxCPU, strconv.FormatFloat(r.CPU, 'g', -1, 64))
		}
	}
	if r.Memory != "" || v.s.given("resources.memory") {
		n, err := r.Memory.Bytes()
		switch {
		case err != nil:
			v.errorf("resources.memory", "%v", err)
		case n < MinMemory:
			v.errorf("resources.memory", "must be at least 4Mi, got %s", quote(string(r.Memory)))
		}
	}
}
