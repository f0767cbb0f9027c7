package spec

import (
	"regexp"

	"github.com/goccy/go-yaml/ast"
	"github.com/invopop/jsonschema"
)

// TLSPassthrough is the one value of tcp[].tls: connections are routed by
// their TLS server name and forwarded still encrypted.
const TLSPassthrough = "passthrough"

// tcpFields are the fields of one tcp entry, in the order the docs list
// them.
var tcpFields = []string{"port", "target", "srv", "tls", "hosts"}

// srvPattern is an SRV service name as RFC 6335 section 5.1 allows it,
// lower case only: 1-15 letters, digits and '-', starting with a letter,
// not ending with '-', no "--".
var srvPattern = regexp.MustCompile(`^[a-z](-?[a-z0-9])*$`)

const maxSRVLen = 15

// tcp decodes the list of forwarded TCP ports.
func (d *decoder) tcp(path string, n ast.Node) []TCPPort {
	elems, ok := d.list(path, n, "a list of ports such as [{port: 25565}]")
	if !ok || len(elems) == 0 {
		return nil
	}
	ports := make([]TCPPort, len(elems))
	for i, el := range elems {
		ports[i] = d.tcpPort(index(path, i), el)
	}
	return ports
}

func (d *decoder) tcpPort(path string, n ast.Node) TCPPort {
	var p TCPPort
	entries, ok := d.mapping(path, n, "a mapping such as {port: 25565, srv: minecraft}")
	if !ok {
		return p
	}
	for _, e := range entries {
		switch e.key {
		case "port":
			p.Port, _ = d.int(e.path, e.value)
		case "target":
			p.Target, _ = d.int(e.path, e.value)
		case "srv":
			p.SRV, _ = d.str(e.path, e.value)
		case "tls":
			p.TLS, _ = d.str(e.path, e.value)
		case "hosts":
			p.Hosts = d.hosts(e.path, e.value)
		default:
			d.unknown(e, tcpFields)
		}
	}
	return p
}

// tcp checks the forwarded ports. A process app has one port, so its
// target can only be that port; an image app may forward to any port of
// its container.
func (v *validator) tcp() {
	s := v.s
	image := s.Image != "" || s.Build != "" || s.given("image") || s.given("build")
	first := map[int]int{}
	for i, p := range s.TCP {
		path := index("tcp", i)
		switch {
		case p.Port == 0 && !s.given(join(path, "port")):
			// Positioned at the entry, as the field has no place of its own.
			e := s.ErrorAt(path, "required: give the edge's public port, e.g. port: 25565")
			e.Path = join(path, "port")
			v.errs = append(v.errs, e)
		case p.Port < 1 || p.Port > 65535:
			v.errorf(join(path, "port"), "must be between 1 and 65535, got %d", p.Port)
		default:
			if j, dup := first[p.Port]; dup {
				v.errorf(join(path, "port"), "port %d is listed twice (also at %s): keep one entry per port, listing every host of a shared port in its hosts", p.Port, index("tcp", j))
			} else {
				first[p.Port] = i
			}
		}
		if p.Target != 0 || s.given(join(path, "target")) {
			switch {
			case p.Target < 1 || p.Target > 65535:
				v.errorf(join(path, "target"), "must be between 1 and 65535, got %d (leave it out to forward to the app's port)", p.Target)
			case image:
			case s.Port == 0:
				v.errorf(join(path, "target"), "a process app listens only on the port skiff passes in $PORT: leave target out to forward there, or set port: %d and listen on it", p.Target)
			case p.Target != s.Port:
				v.errorf(join(path, "target"), "a process app listens on one port, port: %d: leave target out or set it to %d", s.Port, s.Port)
			}
		}
		if p.SRV != "" || s.given(join(path, "srv")) {
			if len(p.SRV) > maxSRVLen || !srvPattern.MatchString(p.SRV) {
				v.errorf(join(path, "srv"), "%s is not a valid service name: use 1-%d lowercase letters, digits and '-', starting with a letter, e.g. minecraft", quote(p.SRV), maxSRVLen)
			}
		}
		v.tcpTLS(path, p)
	}
}

// tcpTLS checks tls and hosts of one entry, which only make sense
// together.
func (v *validator) tcpTLS(path string, p TCPPort) {
	s := v.s
	tlsGiven := p.TLS != "" || s.given(join(path, "tls"))
	if tlsGiven && p.TLS != TLSPassthrough {
		v.errorf(join(path, "tls"), "%s is not supported: the only value is passthrough (route by TLS server name without terminating TLS); leave tls out to forward the whole port", quote(p.TLS))
		return
	}
	hostsGiven := len(p.Hosts) > 0 || s.given(join(path, "hosts"))
	switch {
	case tlsGiven && !hostsGiven:
		v.errorf(join(path, "tls"), "passthrough routes by TLS server name: list the names this app answers under hosts, e.g. hosts: [db.example.com]")
		return
	case hostsGiven && !tlsGiven:
		v.errorf(join(path, "hosts"), "hosts route by TLS server name and need tls: passthrough; leave hosts out to forward the whole port to this app")
		return
	case hostsGiven && len(p.Hosts) == 0:
		v.errorf(join(path, "hosts"), "must not be empty: list the TLS server names routed to this app, e.g. [db.example.com]")
		return
	}
	first := map[string]int{}
	for j, h := range p.Hosts {
		hp := index(join(path, "hosts"), j)
		if msg := hostProblem(h); msg != "" {
			v.errorf(hp, "%s", msg)
			continue
		}
		if k, dup := first[h]; dup {
			v.errorf(hp, "%s is listed twice (also at %s): remove one", quote(h), index(join(path, "hosts"), k))
			continue
		}
		first[h] = j
	}
}

// JSONSchemaExtend adds the ranges and patterns validation checks, and
// that tls and hosts come together.
func (TCPPort) JSONSchemaExtend(s *jsonschema.Schema) {
	prop := func(name string) *jsonschema.Schema {
		p, _ := s.Properties.Get(name)
		return p
	}
	s.Required = []string{"port"}
	port := prop("port")
	port.Minimum, port.Maximum = "1", "65535"
	port.Examples = []any{25565}
	target := prop("target")
	target.Minimum, target.Maximum = "1", "65535"
	srv := prop("srv")
	srv.Pattern = srvPattern.String()
	srv.MaxLength = uint64Ptr(maxSRVLen)
	srv.Examples = []any{"minecraft"}
	prop("tls").Enum = []any{TLSPassthrough}
	hosts := prop("hosts")
	hosts.UniqueItems = true
	hosts.MinItems = uint64Ptr(1)
	hosts.Items.Pattern = hostItemPattern
	hosts.Items.MaxLength = uint64Ptr(253)
	s.DependentRequired = map[string][]string{"tls": {"hosts"}, "hosts": {"tls"}}
}

// hostItemPattern is a hostname as the schema checks it.
const hostItemPattern = `^(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$`
