package spec

import (
	"fmt"
	"slices"

	"github.com/goccy/go-yaml/ast"
)

// The fields each mapping of a skiff.yaml accepts, in the order the docs
// list them. A test checks them against the json tags of the types.
var (
	specFields        = []string{"name", "command", "port", "env", "replicas", "health", "hosts", "resources", "tcp", "image", "build", "dockerfile", "volumes", "read_only", "cap_drop", "deploy", "http"}
	unsupportedFields = []string{"autoscale", "secrets"}
	healthFields      = []string{"path", "tcp", "interval", "timeout", "threshold", "liveness_threshold", "ready_timeout"}
	resourcesFields   = []string{"cpu", "memory"}
)

// spec decodes the top-level mapping.
func (d *decoder) spec(n ast.Node) *Spec {
	s := &Spec{}
	d.pos[""] = nodePos(n)
	for _, e := range d.entries(n, "") {
		switch e.key {
		case "name":
			s.Name, _ = d.str(e.path, e.value)
		case "command":
			s.Command = d.command(e.path, e.value)
		case "port":
			s.Port, _ = d.int(e.path, e.value)
		case "env":
			s.Env = d.env(e.path, e.value)
		case "replicas":
			if r, ok := d.int(e.path, e.value); ok {
				s.Replicas = &r
			}
		case "health":
			s.Health = d.health(e.path, e.value)
		case "hosts":
			s.Hosts = d.hosts(e.path, e.value)
		case "resources":
			s.Resources = d.resources(e.path, e.value)
		case "tcp":
			s.TCP = d.tcp(e.path, e.value)
		case "image":
			s.Image, _ = d.str(e.path, e.value)
		case "build":
			s.Build, _ = d.str(e.path, e.value)
		case "dockerfile":
			s.Dockerfile, _ = d.str(e.path, e.value)
		case "volumes":
			s.Volumes = d.volumes(e.path, e.value)
		case "read_only":
			s.ReadOnly, _ = d.bool(e.path, e.value)
		case "cap_drop":
			s.CapDrop = d.strings(e.path, e.value, "a list of capabilities such as [ALL] or [NET_RAW]")
		case "deploy":
			s.Deploy = d.deploy(e.path, e.value)
		case "http":
			s.HTTP = d.http(e.path, e.value)
		default:
			if slices.Contains(unsupportedFields, e.key) {
				d.fail(e.at, e.path, "not supported yet")
				continue
			}
			d.unknown(e, specFields)
		}
	}
	return s
}

// command decodes the string or the list form.
func (d *decoder) command(path string, n ast.Node) Command {
	v, ok := d.value(n, path)
	if !ok {
		return Command{}
	}
	switch x := v.(type) {
	case *ast.StringNode, *ast.LiteralNode:
		return Command{Shell: scalarText(x)}
	case *ast.SequenceNode:
		elems, _ := d.list(path, x, "")
		args := make([]string, len(elems))
		for i, el := range elems {
			args[i], _ = d.str(index(path, i), el)
		}
		return Command{Args: args}
	}
	d.bad(path, fmt.Sprintf("expected a string (run under /bin/sh -c) or a list of strings (the program and its arguments), got %s", describe(v)))
	return Command{}
}

// env decodes NAME: value pairs. No pairs is the same as no env.
func (d *decoder) env(path string, n ast.Node) map[string]string {
	entries, ok := d.mapping(path, n, "a mapping of NAME: value, such as LOG_LEVEL: info")
	if !ok {
		return nil
	}
	var env map[string]string
	for _, e := range entries {
		v, ok := d.value(e.value, e.path)
		if !ok {
			continue
		}
		if isNull(v) {
			d.bad(e.path, fmt.Sprintf("expected a string, got %s: write %s: \"\" for an empty value", describe(v), e.key))
			continue
		}
		if s, ok := d.str(e.path, v); ok {
			if env == nil {
				env = map[string]string{}
			}
			env[e.key] = s
		}
	}
	return env
}

// hosts decodes the list of extra hostnames.
func (d *decoder) hosts(path string, n ast.Node) []string {
	elems, ok := d.list(path, n, "a list of hostnames")
	if !ok || len(elems) == 0 {
		return nil
	}
	hosts := make([]string, len(elems))
	for i, el := range elems {
		hosts[i], _ = d.str(index(path, i), el)
	}
	return hosts
}

// health decodes the probe settings.
func (d *decoder) health(path string, n ast.Node) *Health {
	entries, ok := d.mapping(path, n, "a mapping such as {path: /healthz, interval: 2s}")
	if !ok {
		return nil
	}
	h := &Health{}
	for _, e := range entries {
		switch e.key {
		case "path":
			h.Path, _ = d.str(e.path, e.value)
		case "tcp":
			h.TCP, _ = d.bool(e.path, e.value)
		case "interval":
			h.Interval, _ = d.duration(e.path, e.value)
		case "timeout":
			h.Timeout, _ = d.duration(e.path, e.value)
		case "threshold":
			h.Threshold, _ = d.int(e.path, e.value)
		case "liveness_threshold":
			if t, ok := d.int(e.path, e.value); ok {
				h.LivenessThreshold = &t
			}
		case "ready_timeout":
			h.ReadyTimeout, _ = d.duration(e.path, e.value)
		default:
			d.unknown(e, healthFields)
		}
	}
	return h
}

// resources decodes the limits.
func (d *decoder) resources(path string, n ast.Node) *Resources {
	entries, ok := d.mapping(path, n, "a mapping such as {cpu: 0.5, memory: 256Mi}")
	if !ok {
		return nil
	}
	r := &Resources{}
	for _, e := range entries {
		switch e.key {
		case "cpu":
			r.CPU = d.cpu(e.path, e.value)
		case "memory":
			r.Memory = d.memory(e.path, e.value)
		default:
			d.unknown(e, resourcesFields)
		}
	}
	return r
}

// cpu decodes cores given as a number (0.5) or a string ("500m").
func (d *decoder) cpu(path string, n ast.Node) float64 {
	v, ok := d.value(n, path)
	if !ok {
		return 0
	}
	switch x := v.(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.StringNode:
		cores, err := parseCPU(scalarText(x))
		if err != nil {
			d.bad(path, err.Error())
			return 0
		}
		return cores
	}
	d.bad(path, fmt.Sprintf("expected cores such as 0.5 or millicores such as \"500m\", got %s", describe(v)))
	return 0
}

// memory decodes a quantity given as a string ("256Mi") or a number of
// bytes. Its syntax is checked by validation, which also sees specs that
// did not come from YAML.
func (d *decoder) memory(path string, n ast.Node) Quantity {
	v, ok := d.value(n, path)
	if !ok {
		return ""
	}
	switch x := v.(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.StringNode:
		return Quantity(scalarText(x))
	}
	d.bad(path, fmt.Sprintf("expected a quantity such as 256Mi or 1Gi, got %s", describe(v)))
	return ""
}
