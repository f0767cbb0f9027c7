package spec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// written strips what Parse records besides the fields, so specs can be
// compared with a literal.
func written(s *Spec) Spec {
	c := *s
	c.file, c.pos = "", nil
	return c
}

func mustParseFile(t *testing.T, path string) *Spec {
	t.Helper()
	s, err := ParseFile(path)
	if err != nil {
		t.Fatalf("ParseFile(%s): %v", path, err)
	}
	return s
}

func TestParseValid(t *testing.T) {
	tests := []struct {
		file string
		want Spec
	}{
		{
			file: "full.yaml",
			want: Spec{
				Name:     "hello",
				Command:  ShellCommand("./hello --port $PORT"),
				Port:     8080,
				Env:      map[string]string{"LOG_LEVEL": "info", "GREETING": "hello, world"},
				Replicas: intPtr(2),
				Health: &Health{
					Path:              "/healthz",
					Interval:          Duration(5 * time.Second),
					Timeout:           Duration(500 * time.Millisecond),
					Threshold:         2,
					LivenessThreshold: intPtr(0),
					ReadyTimeout:      Duration(2 * time.Minute),
				},
				Hosts:     []string{"hello.club.example.com", "*.hello.example.com"},
				Resources: &Resources{CPU: 0.5, Memory: "256Mi"},
			},
		},
		{
			file: "minimal.yaml",
			want: Spec{Name: "hi", Command: ArgsCommand("python3", "-m", "http.server")},
		},
		{
			file: "flow.yaml",
			want: Spec{
				Name:      "flow",
				Command:   ShellCommand("sleep 1"),
				Health:    &Health{TCP: true},
				Resources: &Resources{CPU: 2, Memory: "1e9"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			s := mustParseFile(t, filepath.Join("testdata", tt.file))
			if got := written(s); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse:\n got %#v\nwant %#v", got, tt.want)
			}
			if s.File() != filepath.Join("testdata", tt.file) {
				t.Errorf("File() = %q", s.File())
			}
		})
	}
}

func TestParseAccepts(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want func(*Spec) bool
	}{
		{"block scalar command", "name: a\ncommand: |\n  echo hi\n", func(s *Spec) bool { return s.Command.Shell == "echo hi\n" }},
		{"explicit str tag", "name: a\ncommand: [sleep, !!str 10]\n", func(s *Spec) bool { return reflect.DeepEqual(s.Command.Args, []string{"sleep", "10"}) }},
		{"anchor is harmless", "name: a\ncommand: &c ./x\n", func(s *Spec) bool { return s.Command.Shell == "./x" }},
		{"replicas zero is allowed", "name: a\ncommand: x\nreplicas: 0\n", func(s *Spec) bool { return *s.Replicas == 0 }},
		{"port zero means pick one", "name: a\ncommand: x\nport: 0\n", func(s *Spec) bool { return s.Port == 0 }},
		{"empty sections are absent", "name: a\ncommand: x\nenv:\nhosts:\nhealth:\nresources:\n", func(s *Spec) bool {
			return s.Env == nil && s.Hosts == nil && s.Health == nil && s.Resources == nil
		}},
		{"byte order mark", "\ufeffname: a\ncommand: x\n", func(s *Spec) bool { return s.Name == "a" }},
		{"directive and document start", "%YAML 1.2\n---\nname: a\ncommand: x\n", func(s *Spec) bool { return s.Name == "a" }},
		{"trailing empty document", "name: a\ncommand: x\n---\n", func(s *Spec) bool { return s.Name == "a" }},
		{"cpu as string cores", "name: a\ncommand: x\nresources: {cpu: \"1.5\"}\n", func(s *Spec) bool { return s.Resources.CPU == 1.5 }},
		{"memory as plain bytes", "name: a\ncommand: x\nresources: {memory: 268435456}\n", func(s *Spec) bool { return s.Resources.MemoryBytes() == 256<<20 }},
		{"timeout equal to interval", "name: a\ncommand: x\nhealth: {interval: 500ms, timeout: 500ms}\n", func(s *Spec) bool { return s.Health.Timeout == Duration(500*time.Millisecond) }},
		{"crlf line ends", "name: a\r\ncommand: x\r\n", func(s *Spec) bool { return s.Name == "a" && s.Command.Shell == "x" }},
		{"name of 32 characters", "name: " + strings.Repeat("a", 32) + "\ncommand: x\n", func(s *Spec) bool { return len(s.Name) == 32 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("skiff.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !tt.want(s) {
				t.Errorf("Parse gave %#v", written(s))
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		// The document as a whole.
		{"empty file", "", []string{
			"skiff.yaml: the file is empty: a skiff.yaml needs at least name: and command:",
		}},
		{"only comments", "# nothing yet\n", []string{
			"skiff.yaml: the file is empty: a skiff.yaml needs at least name: and command:",
		}},
		{"a list, not a mapping", "- name: a\n", []string{
			"skiff.yaml:1:1: expected a mapping of fields such as name: and command:, got a list",
		}},
		{"a string, not a mapping", "hello\n", []string{
			`skiff.yaml:1:1: expected a mapping of fields such as name: and command:, got string "hello"`,
		}},
		{"two documents", "name: a\ncommand: x\n---\nname: b\ncommand: y\n", []string{
			"skiff.yaml:3:1: a second YAML document starts here: a skiff.yaml describes one app; put each app in a file of its own",
		}},
		{"syntax error", "name: a\ncommand: \"./x\n", []string{
			"skiff.yaml:2:10: invalid YAML: could not find end character of double-quoted text",
		}},
		{"syntax error in a flow list", "name: a\ncommand: [a, b\nport: 1\n", []string{
			"skiff.yaml:3:1: invalid YAML: ',' or ']' must be specified",
		}},
		{"tab indentation", "name: a\nhealth:\n\tpath: /x\n", []string{
			"skiff.yaml:3:1: invalid YAML: found character '\\t' that cannot start any token (indent with spaces: YAML does not allow tabs for indentation)",
		}},
		{"not UTF-8", "name: a\ncommand: \"\xff\"\n", []string{
			"skiff.yaml:2:11: the file is not valid UTF-8 text: save it as UTF-8",
		}},
		{"control character", "name: a\x00\n", []string{
			"skiff.yaml:1:8: control character U+0000 is not allowed in YAML: remove it",
		}},
		{"too large", "name: a\ncommand: x\n#" + strings.Repeat("x", MaxFileSize), []string{
			"skiff.yaml: the file is too large (more than 65536 bytes): a skiff.yaml is a few lines describing one app",
		}},
		{"nested too deep", "name: a\ncommand: " + strings.Repeat("[", 65) + strings.Repeat("]", 65) + "\n", []string{
			"skiff.yaml:2:74: brackets nest more than 64 deep: a skiff.yaml needs only a few levels",
		}},

		// Keys.
		{"unknown field with suggestion", "name: a\ncommand: x\nreplica: 2\n", []string{
			`skiff.yaml:3:1: unknown field "replica" (did you mean "replicas"?)`,
		}},
		{"unknown field from another tool", "name: a\ncmd: x\n", []string{
			`skiff.yaml:2:1: unknown field "cmd" (did you mean "command"?)`,
		}},
		{"unknown field without suggestion", "name: a\ncommand: x\nowner: bob\n", []string{
			`skiff.yaml:3:1: unknown field "owner": expected one of name, command, port, env, replicas, health, hosts, resources, tcp, image, build, dockerfile, volumes, read_only, cap_drop, deploy, http`,
		}},
		{"health field at the top", "name: a\ncommand: x\ninterval: 2s\n", []string{
			`skiff.yaml:3:1: unknown field "interval": it belongs under health:`,
		}},
		{"unknown health field", "name: a\ncommand: x\nhealth:\n  intervall: 2s\n", []string{
			`skiff.yaml:4:3: health: unknown field "intervall" (did you mean "interval"?)`,
		}},
		{"unknown resources field", "name: a\ncommand: x\nresources: {disk: 1Gi}\n", []string{
			`skiff.yaml:3:13: resources: unknown field "disk": expected one of cpu, memory`,
		}},
		{"duplicate key", "name: a\ncommand: x\nport: 80\nport: 81\n", []string{
			"skiff.yaml:4:1: port: duplicate key: already given at line 3; remove one",
		}},
		{"duplicate env key", "name: a\ncommand: x\nenv:\n  A: \"1\"\n  A: \"2\"\n", []string{
			"skiff.yaml:5:3: env.A: duplicate key: already given at line 4; remove one",
		}},
		{"alias", "name: &n a\ncommand: *n\n", []string{
			"skiff.yaml:2:1: command: aliases (*n) are not supported in skiff.yaml: write the value out",
		}},
		{"merge key", "name: a\ncommand: x\nhealth:\n  <<: {path: /x}\n", []string{
			"skiff.yaml:4:3: health: merge keys (<<) are not supported in skiff.yaml: write the fields out",
		}},
		{"alias as a key", "name: a\ncommand: x\n*k : 1\n", []string{
			"skiff.yaml:3:1: aliases (*k) are not supported in skiff.yaml: write the key out",
		}},
		{"null as a key", "name: a\ncommand: x\n~: 2\n", []string{
			"skiff.yaml:3:1: expected a field name, got null",
		}},
		{"custom tag", "name: !app a\ncommand: x\n", []string{
			"skiff.yaml:1:1: name: tag !app is not supported in skiff.yaml: remove it",
		}},

		// name and command.
		{"invalid name", "name: Hello_World\ncommand: x\n", []string{
			`skiff.yaml:1:1: name: "Hello_World" is not a valid name: use 1-32 lowercase letters, digits and '-', starting and ending with a letter or digit`,
		}},
		{"name too long", "name: " + strings.Repeat("a", 33) + "\ncommand: x\n", []string{
			`skiff.yaml:1:1: name: "` + strings.Repeat("a", 33) + `" is not a valid name: use 1-32 lowercase letters, digits and '-', starting and ending with a letter or digit`,
		}},
		{"name ends with a dash", "name: a-\ncommand: x\n", []string{
			`skiff.yaml:1:1: name: "a-" is not a valid name: use 1-32 lowercase letters, digits and '-', starting and ending with a letter or digit`,
		}},
		{"name missing", "command: x\n", []string{
			"skiff.yaml:1:1: name: required: give the app a name such as hello (lowercase letters, digits and '-')",
		}},
		{"name empty", "name: \"\"\ncommand: x\n", []string{
			"skiff.yaml:1:1: name: must not be empty: give the app a name such as hello",
		}},
		{"name a number", "name: 42\ncommand: x\n", []string{
			`skiff.yaml:1:1: name: expected a string, got integer 42: quote it ("42")`,
		}},
		{"command missing", "name: a\nport: 8080\n", []string{
			"skiff.yaml:1:1: command: required for an app without image or build: give the command that starts the app, e.g. command: ./server",
		}},
		{"command empty list", "name: a\ncommand: []\n", []string{
			"skiff.yaml:2:1: command: must not be empty: give the command that starts the app, e.g. command: ./server",
		}},
		{"command blank", "name: a\ncommand: \"  \"\n", []string{
			"skiff.yaml:2:1: command: must not be blank: give the command that starts the app, e.g. command: ./server",
		}},
		{"command a mapping", "name: a\ncommand: {run: x}\n", []string{
			"skiff.yaml:2:1: command: expected a string (run under /bin/sh -c) or a list of strings (the program and its arguments), got a mapping",
		}},
		{"command element a number", "name: a\ncommand:\n  - sleep\n  - 10\n", []string{
			`skiff.yaml:4:5: command[1]: expected a string, got integer 10: quote it ("10")`,
		}},
		{"command program empty", "name: a\ncommand: [\"\", x]\n", []string{
			"skiff.yaml:2:11: command[0]: the program must not be empty",
		}},

		// Fields not supported yet.
		{"autoscale", "name: a\ncommand: x\nautoscale:\n  min: 1\n", []string{"skiff.yaml:3:1: autoscale: not supported yet"}},
		{"secrets", "name: a\ncommand: x\nsecrets: [TOKEN]\n", []string{"skiff.yaml:3:1: secrets: not supported yet"}},
		{"typo of a field not supported yet", "name: a\ncommand: x\nimag: nginx\n", []string{
			`skiff.yaml:3:1: unknown field "imag" (did you mean "image"?)`,
		}},

		// port and replicas.
		{"port not a number", "name: a\ncommand: x\nport: 80a\n", []string{
			`skiff.yaml:3:1: port: expected an integer, got string "80a"`,
		}},
		{"port quoted", "name: a\ncommand: x\nport: \"80\"\n", []string{
			`skiff.yaml:3:1: port: expected an integer, got string "80": remove the quotes`,
		}},
		{"port a float", "name: a\ncommand: x\nport: 80.5\n", []string{
			"skiff.yaml:3:1: port: expected an integer, got number 80.5",
		}},
		{"port too large", "name: a\ncommand: x\nport: 70000\n", []string{
			"skiff.yaml:3:1: port: must be between 1 and 65535, got 70000 (leave it out to get a free port in $PORT)",
		}},
		{"port beyond 64 bits", "name: a\ncommand: x\nport: 99999999999999999999999\n", []string{
			"skiff.yaml:3:1: port: 99999999999999999999999 is out of range",
		}},
		{"port empty", "name: a\ncommand: x\nport:\n", []string{
			"skiff.yaml:3:1: port: expected an integer, got nothing",
		}},
		{"replicas negative", "name: a\ncommand: x\nreplicas: -1\n", []string{
			"skiff.yaml:3:1: replicas: must be >= 0, got -1",
		}},
		{"replicas too many", "name: a\ncommand: x\nreplicas: 101\n", []string{
			"skiff.yaml:3:1: replicas: must be <= 100, got 101",
		}},

		// env.
		{"env value a number", "name: a\ncommand: x\nenv:\n  WORKERS: 4\n", []string{
			`skiff.yaml:4:3: env.WORKERS: expected a string, got integer 4: quote it ("4")`,
		}},
		{"env value a boolean", "name: a\ncommand: x\nenv: {DEBUG: true}\n", []string{
			`skiff.yaml:3:7: env.DEBUG: expected a string, got boolean true: quote it ("true")`,
		}},
		{"env value empty", "name: a\ncommand: x\nenv:\n  EMPTY:\n", []string{
			`skiff.yaml:4:3: env.EMPTY: expected a string, got nothing: write EMPTY: "" for an empty value`,
		}},
		{"env key invalid", "name: a\ncommand: x\nenv:\n  1ST: a\n", []string{
			`skiff.yaml:4:3: env.1ST: "1ST" is not a valid variable name: use letters, digits and '_', not starting with a digit`,
		}},
		{"env PORT", "name: a\ncommand: x\nenv:\n  PORT: \"80\"\n", []string{
			"skiff.yaml:4:3: env.PORT: PORT is set by skiff to the port the app must listen on: remove it (set port: to choose the port)",
		}},
		{"env SKIFF_ prefix", "name: a\ncommand: x\nenv:\n  SKIFF_APP: a\n", []string{
			"skiff.yaml:4:3: env.SKIFF_APP: names starting with SKIFF_ are reserved for skiff: rename it",
		}},
		{"env as a list", "name: a\ncommand: x\nenv:\n  - A=1\n", []string{
			"skiff.yaml:3:1: env: expected a mapping of NAME: value, such as LOG_LEVEL: info, got a list",
		}},

		// hosts.
		{"hosts a string", "name: a\ncommand: x\nhosts: a.example.com\n", []string{
			`skiff.yaml:3:1: hosts: expected a list of hostnames, got string "a.example.com": write [a.example.com] for a list of one`,
		}},
		{"host with scheme", "name: a\ncommand: x\nhosts: [\"https://a.example.com/\"]\n", []string{
			`skiff.yaml:3:9: hosts[0]: "https://a.example.com/" has a scheme: write only the hostname, e.g. a.example.com`,
		}},
		{"host with port", "name: a\ncommand: x\nhosts: [\"a.example.com:443\"]\n", []string{
			`skiff.yaml:3:9: hosts[0]: "a.example.com:443" has a port: write only the hostname; the edge serves it on its own ports`,
		}},
		{"host with path", "name: a\ncommand: x\nhosts: [a.example.com/x]\n", []string{
			`skiff.yaml:3:9: hosts[0]: "a.example.com/x" has a path: write only the hostname`,
		}},
		{"host uppercase", "name: a\ncommand: x\nhosts: [A.Example.com]\n", []string{
			`skiff.yaml:3:9: hosts[0]: "A.Example.com" must be lowercase: a.example.com`,
		}},
		{"host trailing dot", "name: a\ncommand: x\nhosts: [a.example.com.]\n", []string{
			`skiff.yaml:3:9: hosts[0]: "a.example.com." ends with a dot: write a.example.com`,
		}},
		{"host an IP address", "name: a\ncommand: x\nhosts: [127.0.0.1]\n", []string{
			`skiff.yaml:3:9: hosts[0]: "127.0.0.1" is an IP address: hosts are DNS names such as app.example.com`,
		}},
		{"host wildcard inside", "name: a\ncommand: x\nhosts: [\"a.*.example.com\"]\n", []string{
			`skiff.yaml:3:9: hosts[0]: "a.*.example.com" is not a valid hostname: a wildcard may only be the whole first label, as in *.example.com`,
		}},
		{"host only a wildcard", "name: a\ncommand: x\nhosts: [\"*\"]\n", []string{
			`skiff.yaml:3:9: hosts[0]: "*" is not a valid hostname: a wildcard needs a domain, as in *.example.com`,
		}},
		{"host empty label", "name: a\ncommand: x\nhosts: [a..example.com]\n", []string{
			`skiff.yaml:3:9: hosts[0]: "a..example.com" is not a valid hostname: it has an empty label (a dot at the start or two in a row)`,
		}},
		{"host bad label", "name: a\ncommand: x\nhosts: [a_b.example.com]\n", []string{
			`skiff.yaml:3:9: hosts[0]: "a_b.example.com" is not a valid hostname: label "a_b" must be 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit`,
		}},
		{"host twice", "name: a\ncommand: x\nhosts:\n  - a.example.com\n  - b.example.com\n  - a.example.com\n", []string{
			`skiff.yaml:6:5: hosts[2]: "a.example.com" is listed twice (also at hosts[0]): remove one`,
		}},

		// health.
		{"health not a mapping", "name: a\ncommand: x\nhealth: /healthz\n", []string{
			`skiff.yaml:3:1: health: expected a mapping such as {path: /healthz, interval: 2s}, got string "/healthz"`,
		}},
		{"health path without slash", "name: a\ncommand: x\nhealth:\n  path: healthz\n", []string{
			`skiff.yaml:4:3: health.path: "healthz" must start with "/", e.g. /healthz`,
		}},
		{"health path and tcp", "name: a\ncommand: x\nhealth:\n  path: /healthz\n  tcp: true\n", []string{
			"skiff.yaml:5:3: health.tcp: cannot be combined with path: probe over HTTP (path) or TCP, not both",
		}},
		{"health tcp false alone", "name: a\ncommand: x\nhealth: {tcp: false}\n", []string{
			"skiff.yaml:3:10: health.tcp: false needs a path to probe over HTTP instead, e.g. path: /healthz; leave tcp out to probe over TCP",
		}},
		{"health tcp quoted", "name: a\ncommand: x\nhealth: {tcp: \"true\"}\n", []string{
			`skiff.yaml:3:10: health.tcp: expected true or false, got string "true": remove the quotes`,
		}},
		{"health tcp yes", "name: a\ncommand: x\nhealth: {tcp: yes}\n", []string{
			`skiff.yaml:3:10: health.tcp: expected true or false, got string "yes"`,
		}},
		{"invalid duration", "name: a\ncommand: x\nhealth:\n  interval: 2x\n", []string{
			`skiff.yaml:4:3: health.interval: invalid duration "2x": expected e.g. 2s or 1m30s`,
		}},
		{"duration without unit", "name: a\ncommand: x\nhealth:\n  interval: 2\n", []string{
			"skiff.yaml:4:3: health.interval: expected a duration such as 2s or 1m30s, got integer 2: add a unit, e.g. 2s",
		}},
		{"interval too short", "name: a\ncommand: x\nhealth:\n  interval: 50ms\n", []string{
			"skiff.yaml:4:3: health.interval: must be between 100ms and 1h, got 50ms",
		}},
		{"interval zero", "name: a\ncommand: x\nhealth:\n  interval: 0s\n", []string{
			"skiff.yaml:4:3: health.interval: must be between 100ms and 1h, got 0s",
		}},
		{"interval too long", "name: a\ncommand: x\nhealth:\n  interval: 90m\n", []string{
			"skiff.yaml:4:3: health.interval: must be between 100ms and 1h, got 1h30m",
		}},
		{"timeout above interval", "name: a\ncommand: x\nhealth:\n  interval: 1s\n  timeout: 2s\n", []string{
			"skiff.yaml:5:3: health.timeout: must be at most the interval (1s), got 2s",
		}},
		{"timeout above default interval", "name: a\ncommand: x\nhealth:\n  timeout: 5s\n", []string{
			"skiff.yaml:4:3: health.timeout: must be at most the interval (2s), got 5s",
		}},
		{"timeout negative", "name: a\ncommand: x\nhealth:\n  timeout: -1s\n", []string{
			"skiff.yaml:4:3: health.timeout: must be more than 0, got -1s",
		}},
		{"threshold zero", "name: a\ncommand: x\nhealth:\n  threshold: 0\n", []string{
			"skiff.yaml:4:3: health.threshold: must be between 1 and 100, got 0",
		}},
		{"liveness threshold too large", "name: a\ncommand: x\nhealth:\n  liveness_threshold: 101\n", []string{
			"skiff.yaml:4:3: health.liveness_threshold: must be between 0 (no restarts) and 100, got 101",
		}},
		{"ready timeout too short", "name: a\ncommand: x\nhealth:\n  ready_timeout: 500ms\n", []string{
			"skiff.yaml:4:3: health.ready_timeout: must be between 1s and 1h, got 500ms",
		}},

		// resources.
		{"cpu zero", "name: a\ncommand: x\nresources:\n  cpu: 0\n", []string{
			"skiff.yaml:4:3: resources.cpu: must be more than 0 cores, got 0",
		}},
		{"cpu too many", "name: a\ncommand: x\nresources:\n  cpu: 65\n", []string{
			"skiff.yaml:4:3: resources.cpu: must be at most 64 cores, got 65",
		}},
		{"cpu not a quantity", "name: a\ncommand: x\nresources:\n  cpu: half\n", []string{
			`skiff.yaml:4:3: resources.cpu: invalid CPU "half": expected cores such as 0.5 or 2, or millicores such as 500m`,
		}},
		{"memory in MB", "name: a\ncommand: x\nresources:\n  memory: 256MB\n", []string{
			`skiff.yaml:4:3: resources.memory: invalid quantity "256MB": did you mean 256Mi (powers of 1024) or 256M (powers of 1000)?`,
		}},
		{"memory too small", "name: a\ncommand: x\nresources:\n  memory: 1Mi\n", []string{
			`skiff.yaml:4:3: resources.memory: must be at least 4Mi, got "1Mi"`,
		}},
		{"memory a list", "name: a\ncommand: x\nresources:\n  memory: [1Gi]\n", []string{
			"skiff.yaml:4:3: resources.memory: expected a quantity such as 256Mi or 1Gi, got a list",
		}},

		// Many problems at once, in file order, each reported once.
		{"two errors", "name: hello\ncommand: ./x\nport: 80a\nhealth:\n  interval: 2x\n", []string{
			`skiff.yaml:3:1: port: expected an integer, got string "80a"`,
			`skiff.yaml:5:3: health.interval: invalid duration "2x": expected e.g. 2s or 1m30s`,
		}},
		{"decode and validation errors together", "replica: 2\nname: Hello\ncommand: [sleep, 1]\nhosts: [A.example.com]\n", []string{
			`skiff.yaml:1:1: unknown field "replica" (did you mean "replicas"?)`,
			`skiff.yaml:2:1: name: "Hello" is not a valid name: use 1-32 lowercase letters, digits and '-', starting and ending with a letter or digit`,
			`skiff.yaml:3:18: command[1]: expected a string, got integer 1: quote it ("1")`,
			`skiff.yaml:4:9: hosts[0]: "A.example.com" must be lowercase: a.example.com`,
		}},
		{"two documents and a bad field", "name: a\ncommand: x\nport: x\n---\nname: b\n", []string{
			`skiff.yaml:3:1: port: expected an integer, got string "x"`,
			"skiff.yaml:4:1: a second YAML document starts here: a skiff.yaml describes one app; put each app in a file of its own",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("skiff.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded with %#v; want errors:\n%s", written(s), strings.Join(tt.want, "\n"))
			}
			if s != nil {
				t.Errorf("Parse returned a spec along with errors")
			}
			var errs *Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want *Errors: %v", err, err)
			}
			got := make([]string, len(errs.List))
			for i, e := range errs.List {
				got[i] = e.Error()
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(tt.want, "\n     "))
			}
			if err.Error() != strings.Join(tt.want, "\n") {
				t.Errorf("Error() = %q, want one problem per line", err.Error())
			}
		})
	}
}

func TestErrorFields(t *testing.T) {
	_, err := Parse("apps/hello/skiff.yaml", []byte("name: hello\ncommand: x\nhealth:\n  interval: 2x\n"))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("errors.As(*Error) failed on %v", err)
	}
	want := Error{File: "apps/hello/skiff.yaml", Line: 4, Column: 3, Path: "health.interval", Message: `invalid duration "2x": expected e.g. 2s or 1m30s`}
	if *e != want {
		t.Errorf("error = %#v, want %#v", *e, want)
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		name string
		err  Error
		want string
	}{
		{"everything", Error{File: "skiff.yaml", Line: 4, Column: 3, Path: "health.interval", Message: "bad"}, "skiff.yaml:4:3: health.interval: bad"},
		{"no position", Error{File: "skiff.yaml", Message: "the file is empty"}, "skiff.yaml: the file is empty"},
		{"no file", Error{Line: 2, Column: 1, Path: "port", Message: "bad"}, "2:1: port: bad"},
		{"nothing but a message", Error{Path: "port", Message: "bad"}, "port: bad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseFileUnreadable(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		want string
	}{
		{"missing", filepath.Join(dir, "nope.yaml"), filepath.Join(dir, "nope.yaml") + ": cannot read the spec: no such file or directory"},
		{"a directory", dir, dir + ": cannot read the spec: is a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseFile(tt.path)
			var errs *Errors
			if !errors.As(err, &errs) || len(errs.List) != 1 {
				t.Fatalf("ParseFile error = %#v, want *Errors with one error", err)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseFileNamesFileInErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "skiff.yaml")
	if err := os.WriteFile(path, []byte("name: a\ncommand: x\nport: x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := ParseFile(path)
	if want := path + `:3:1: port: expected an integer, got string "x"`; err == nil || err.Error() != want {
		t.Errorf("ParseFile error = %v, want %s", err, want)
	}
}

func TestCommandArgv(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"string runs under a shell", "command: ./server --port $PORT", []string{"/bin/sh", "-c", "./server --port $PORT"}},
		{"list runs directly", "command: [./server, --port, \"8080\"]", []string{"./server", "--port", "8080"}},
		{"block list", "command:\n  - python3\n  - app.py", []string{"python3", "app.py"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("skiff.yaml", []byte("name: a\n"+tt.yaml+"\n"))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := s.Command.Argv(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Argv() = %q, want %q", got, tt.want)
			}
		})
	}
	argv := ArgsCommand("a", "b")
	got := argv.Argv()
	got[0] = "changed"
	if argv.Args[0] != "a" {
		t.Errorf("Argv shares its slice with the spec: changing it changed the command")
	}
	if (Command{}).Argv() != nil {
		t.Errorf("zero command has an argv")
	}
}

func TestDefaults(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want Spec
	}{
		{
			name: "nothing given",
			yaml: "name: a\ncommand: x\n",
			want: Spec{Name: "a", Command: ShellCommand("x"), Replicas: intPtr(1), Health: &Health{
				TCP: true, Interval: Duration(2 * time.Second), Timeout: Duration(time.Second), Threshold: 3,
				LivenessThreshold: intPtr(6), ReadyTimeout: Duration(60 * time.Second),
			}},
		},
		{
			name: "http probe keeps tcp off",
			yaml: "name: a\ncommand: x\nreplicas: 0\nhealth: {path: /up}\n",
			want: Spec{Name: "a", Command: ShellCommand("x"), Replicas: intPtr(0), Health: &Health{
				Path: "/up", Interval: Duration(2 * time.Second), Timeout: Duration(time.Second), Threshold: 3,
				LivenessThreshold: intPtr(6), ReadyTimeout: Duration(60 * time.Second),
			}},
		},
		{
			name: "explicit zero liveness stays off and a short interval shortens the timeout",
			yaml: "name: a\ncommand: x\nhealth: {interval: 500ms, liveness_threshold: 0}\n",
			want: Spec{Name: "a", Command: ShellCommand("x"), Replicas: intPtr(1), Health: &Health{
				TCP: true, Interval: Duration(500 * time.Millisecond), Timeout: Duration(500 * time.Millisecond), Threshold: 3,
				LivenessThreshold: intPtr(0), ReadyTimeout: Duration(60 * time.Second),
			}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse("skiff.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			s.Defaults()
			if got := written(s); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("after Defaults:\n got %#v\nwant %#v", got, tt.want)
			}
			if err := s.Validate(); err != nil {
				t.Errorf("defaults do not validate: %v", err)
			}
			s.Defaults()
			if got := written(s); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Defaults is not idempotent: got %#v", got)
			}
		})
	}
}

func TestParseLeavesDefaultsOut(t *testing.T) {
	s, err := Parse("skiff.yaml", []byte("name: a\ncommand: x\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Replicas != nil || s.Health != nil {
		t.Errorf("Parse filled in defaults: replicas %v, health %v", s.Replicas, s.Health)
	}
}

func TestPos(t *testing.T) {
	s := mustParseFile(t, filepath.Join("testdata", "full.yaml"))
	tests := []struct {
		path      string
		line, col int
	}{
		{"", 2, 1},
		{"name", 2, 1},
		{"env.GREETING", 7, 3},
		{"health.interval", 11, 3},
		{"hosts", 16, 1},
		{"hosts[0]", 17, 5},
		{"hosts[1]", 18, 5},
		{"resources.memory", 21, 3},
		{"hosts[2]", 0, 0},
		{"image", 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			line, col := s.Pos(tt.path)
			if line != tt.line || col != tt.col {
				t.Errorf("Pos(%q) = %d:%d, want %d:%d", tt.path, line, col, tt.line, tt.col)
			}
		})
	}
	e := s.ErrorAt("hosts[1]", `"*.hello.example.com" is served by app "other"`)
	want := filepath.Join("testdata", "full.yaml") + `:18:5: hosts[1]: "*.hello.example.com" is served by app "other"`
	if e.Error() != want {
		t.Errorf("ErrorAt = %q, want %q", e.Error(), want)
	}
	if line, col := (&Spec{}).Pos("name"); line != 0 || col != 0 {
		t.Errorf("Pos on a spec not from Parse = %d:%d, want 0:0", line, col)
	}
}

func TestValidateBuiltSpec(t *testing.T) {
	good := &Spec{Name: "a", Command: ShellCommand("x")}
	if err := good.Validate(); err != nil {
		t.Errorf("Validate(good) = %v", err)
	}
	bad := &Spec{Name: "a", Command: Command{Shell: "x", Args: []string{"y"}}, Port: 70000,
		Resources: &Resources{Memory: "lots"}, Volumes: []Volume{{Name: "data", Path: "/data"}}}
	err := bad.Validate()
	want := strings.Join([]string{
		"command: set either a string or a list, not both",
		"port: must be between 1 and 65535, got 70000 (leave it out to get a free port in $PORT)",
		`resources.memory: invalid quantity "lots": expected bytes or a number with a suffix such as 256Mi, 1Gi, 512M or 1e9`,
		"volumes: needs image or build: only container apps have it",
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("Validate(bad) =\n%v\nwant\n%s", err, want)
	}
}

func TestJSONRoundTrip(t *testing.T) {
	for _, file := range []string{"full.yaml", "minimal.yaml", "flow.yaml"} {
		t.Run(file, func(t *testing.T) {
			s := mustParseFile(t, filepath.Join("testdata", file))
			data, err := json.Marshal(s)
			if err != nil {
				t.Fatalf("Marshal: %v", err)
			}
			var back Spec
			if err := json.Unmarshal(data, &back); err != nil {
				t.Fatalf("Unmarshal %s: %v", data, err)
			}
			if !reflect.DeepEqual(back, written(s)) {
				t.Errorf("round trip through %s:\n got %#v\nwant %#v", data, back, written(s))
			}
			// JSON is YAML: what the API stores must parse again as a spec.
			again, err := Parse("stored.json", data)
			if err != nil {
				t.Fatalf("Parse(JSON of the spec): %v\n%s", err, data)
			}
			if !reflect.DeepEqual(written(again), written(s)) {
				t.Errorf("reparsed JSON differs:\n got %#v\nwant %#v", written(again), written(s))
			}
		})
	}
}

func TestJSONForms(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want string
	}{
		{"shell command", ShellCommand("./x"), `"./x"`},
		{"argv command", ArgsCommand("./x", "-v"), `["./x","-v"]`},
		{"duration", Duration(90 * time.Second), `"1m30s"`},
		{"liveness off", Health{LivenessThreshold: intPtr(0)}, `{"liveness_threshold":0}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := json.Marshal(tt.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("Marshal = %s, want %s", got, tt.want)
			}
		})
	}
	var d Duration
	if err := json.Unmarshal([]byte(`"2x"`), &d); err == nil {
		t.Errorf("Unmarshal of a bad duration succeeded")
	}
}

// TestKnownFields keeps the parser's field lists in step with the json
// tags of the types, which the schema is generated from.
func TestKnownFields(t *testing.T) {
	tests := []struct {
		typ  reflect.Type
		want []string
	}{
		{reflect.TypeFor[Spec](), append(append([]string(nil), specFields...), unsupportedFields...)},
		{reflect.TypeFor[Health](), healthFields},
		{reflect.TypeFor[Resources](), resourcesFields},
	}
	for _, tt := range tests {
		t.Run(tt.typ.Name(), func(t *testing.T) {
			var tags []string
			for i := range tt.typ.NumField() {
				f := tt.typ.Field(i)
				if !f.IsExported() {
					continue
				}
				name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
				tags = append(tags, name)
			}
			if !reflect.DeepEqual(tags, tt.want) {
				t.Errorf("json tags %q, parser knows %q", tags, tt.want)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, seed := range []string{
		"", "- a", "name: a\ncommand: *x\n", "a: &a [*a]", "name: a\ncommand: [\"\", 1]\nhealth: {tcp: false}\n",
		"? [a]\n: b\n", "!!str", "name: a\n---\n---\nb: c", "{name: a, command: x, resources: {cpu: .nan, memory: 1e99}}",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Parse("fuzz.yaml", data)
		if err != nil {
			var errs *Errors
			if !errors.As(err, &errs) || len(errs.List) == 0 {
				t.Fatalf("error is not a non-empty *Errors: %#v", err)
			}
			for _, e := range errs.List {
				if e.Message == "" || e.File != "fuzz.yaml" {
					t.Fatalf("malformed error %#v", e)
				}
			}
			return
		}
		if err := s.Validate(); err != nil {
			t.Fatalf("Parse accepted a spec that Validate rejects: %v", err)
		}
		if s.Command.IsZero() || s.Name == "" {
			t.Fatalf("Parse accepted a spec without name or command: %#v", written(s))
		}
	})
}
