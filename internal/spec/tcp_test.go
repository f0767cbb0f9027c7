package spec

import (
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestTCPParse(t *testing.T) {
	src := `name: game
command: ./server
port: 25565
tcp:
  - {port: 25565, target: 25565, srv: minecraft}
  - port: 5432
    tls: passthrough
    hosts: [db.example.com, "*.db.example.com"]
`
	sp, err := Parse("skiff.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := []TCPPort{
		{Port: 25565, Target: 25565, SRV: "minecraft"},
		{Port: 5432, TLS: TLSPassthrough, Hosts: []string{"db.example.com", "*.db.example.com"}},
	}
	if !reflect.DeepEqual(sp.TCP, want) {
		t.Errorf("TCP = %+v, want %+v", sp.TCP, want)
	}
	if line, col := sp.Pos("tcp[1].hosts[1]"); line != 8 || col != 29 {
		t.Errorf("Pos(tcp[1].hosts[1]) = %d:%d, want 8:29", line, col)
	}
}

func TestTCPErrors(t *testing.T) {
	const head = "name: a\ncommand: x\n"
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"not a list", head + "tcp: 25565\n", []string{
			"skiff.yaml:3:1: tcp: expected a list of ports such as [{port: 25565}], got integer 25565",
		}},
		{"element not a mapping", head + "tcp: [25565]\n", []string{
			"skiff.yaml:3:7: tcp[0]: expected a mapping such as {port: 25565, srv: minecraft}, got integer 25565",
		}},
		{"port missing", head + "tcp:\n  - srv: minecraft\n", []string{
			"skiff.yaml:4:5: tcp[0].port: required: give the edge's public port, e.g. port: 25565",
		}},
		{"port out of range", head + "tcp: [{port: 70000}]\n", []string{
			"skiff.yaml:3:8: tcp[0].port: must be between 1 and 65535, got 70000",
		}},
		{"port zero", head + "tcp: [{port: 0}]\n", []string{
			"skiff.yaml:3:8: tcp[0].port: must be between 1 and 65535, got 0",
		}},
		{"port quoted", head + "tcp: [{port: \"22\"}]\n", []string{
			`skiff.yaml:3:8: tcp[0].port: expected an integer, got string "22": remove the quotes`,
		}},
		{"duplicate port", head + "tcp:\n  - port: 22\n  - port: 22\n", []string{
			"skiff.yaml:5:5: tcp[1].port: port 22 is listed twice (also at tcp[0]): keep one entry per port, listing every host of a shared port in its hosts",
		}},
		{"unknown field", head + "tcp: [{port: 22, proto: udp}]\n", []string{
			`skiff.yaml:3:18: tcp[0]: unknown field "proto": expected one of port, target, srv, tls, hosts`,
		}},
		{"target without port", head + "tcp: [{port: 22, target: 2222}]\n", []string{
			"skiff.yaml:3:18: tcp[0].target: a process app listens only on the port skiff passes in $PORT: leave target out to forward there, or set port: 2222 and listen on it",
		}},
		{"target other than port", head + "port: 8080\ntcp: [{port: 22, target: 2222}]\n", []string{
			"skiff.yaml:4:18: tcp[0].target: a process app listens on one port, port: 8080: leave target out or set it to 8080",
		}},
		{"target out of range", head + "tcp: [{port: 22, target: 0}]\n", []string{
			"skiff.yaml:3:18: tcp[0].target: must be between 1 and 65535, got 0 (leave it out to forward to the app's port)",
		}},
		{"srv not a label", head + "tcp: [{port: 22, srv: _ssh}]\n", []string{
			`skiff.yaml:3:18: tcp[0].srv: "_ssh" is not a valid service name: use 1-15 lowercase letters, digits and '-', starting with a letter, e.g. minecraft`,
		}},
		{"srv too long", head + "tcp: [{port: 22, srv: abcdefghijklmnop}]\n", []string{
			`skiff.yaml:3:18: tcp[0].srv: "abcdefghijklmnop" is not a valid service name: use 1-15 lowercase letters, digits and '-', starting with a letter, e.g. minecraft`,
		}},
		{"tls other than passthrough", head + "tcp: [{port: 443, tls: terminate, hosts: [a.example.com]}]\n", []string{
			`skiff.yaml:3:19: tcp[0].tls: "terminate" is not supported: the only value is passthrough (route by TLS server name without terminating TLS); leave tls out to forward the whole port`,
		}},
		{"tls without hosts", head + "tcp: [{port: 443, tls: passthrough}]\n", []string{
			"skiff.yaml:3:19: tcp[0].tls: passthrough routes by TLS server name: list the names this app answers under hosts, e.g. hosts: [db.example.com]",
		}},
		{"hosts without tls", head + "tcp: [{port: 443, hosts: [a.example.com]}]\n", []string{
			"skiff.yaml:3:19: tcp[0].hosts: hosts route by TLS server name and need tls: passthrough; leave hosts out to forward the whole port to this app",
		}},
		{"bad and repeated host", head + "tcp:\n  - port: 443\n    tls: passthrough\n    hosts: [A.example.com, b.example.com, b.example.com]\n", []string{
			`skiff.yaml:6:13: tcp[0].hosts[0]: "A.example.com" must be lowercase: a.example.com`,
			`skiff.yaml:6:43: tcp[0].hosts[2]: "b.example.com" is listed twice (also at tcp[0].hosts[1]): remove one`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("skiff.yaml", []byte(tt.src))
			if err == nil {
				t.Fatal("Parse accepted the spec")
			}
			got := strings.Split(err.Error(), "\n")
			if !slices.Equal(got, tt.want) {
				t.Errorf("errors:\n got %s\nwant %s", strings.Join(got, "\n     "), strings.Join(tt.want, "\n     "))
			}
		})
	}
}

// TestTCPFields keeps tcpFields in step with TCPPort's json tags.
func TestTCPFields(t *testing.T) {
	typ := reflect.TypeFor[TCPPort]()
	var tags []string
	for i := range typ.NumField() {
		tag, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
		tags = append(tags, tag)
	}
	if !slices.Equal(tags, tcpFields) {
		t.Errorf("json tags %v, tcpFields %v", tags, tcpFields)
	}
}

func TestTCPSchemaRejects(t *testing.T) {
	sch := compileSchema(t)
	const head = "name: a\ncommand: x\n"
	tests := []struct {
		name string
		yaml string
	}{
		{"port missing", head + "tcp: [{srv: ssh}]\n"},
		{"port out of range", head + "tcp: [{port: 70000}]\n"},
		{"srv not a label", head + "tcp: [{port: 22, srv: _ssh}]\n"},
		{"tls other than passthrough", head + "tcp: [{port: 443, tls: terminate, hosts: [a.example.com]}]\n"},
		{"tls without hosts", head + "tcp: [{port: 443, tls: passthrough}]\n"},
		{"hosts without tls", head + "tcp: [{port: 443, hosts: [a.example.com]}]\n"},
		{"unknown field", head + "tcp: [{port: 22, proto: udp}]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse("skiff.yaml", []byte(tt.yaml)); err == nil {
				t.Fatalf("Parse accepts the spec; the case does not test a bad spec")
			}
			if err := sch.Validate(yamlInstance(t, tt.yaml)); err == nil {
				t.Errorf("schema accepts a spec Parse rejects")
			}
		})
	}
}
