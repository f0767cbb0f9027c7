package api_test

import (
	"context"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/store"
)

func TestDeployPortInUse(t *testing.T) {
	tests := []struct {
		name     string
		owner    string // spec of the app that holds the port
		spec     string // spec deployed second
		wantPath string
		wantLine int
		wantCol  int
		wantText string
	}{
		{
			name:     "whole port",
			owner:    "name: alpha\ncommand: ./run.sh\ntcp: [{port: 25565}]\n",
			spec:     "name: beta\ncommand: ./run.sh\ntcp:\n  - port: 22\n  - port: 25565\n",
			wantPath: "tcp[1].port", wantLine: 5, wantCol: 5, wantText: "TCP port 25565 is already forwarded",
		},
		{
			name:     "server name on a shared port",
			owner:    "name: alpha\ncommand: ./run.sh\ntcp: [{port: 443, tls: passthrough, hosts: [a.example.com]}]\n",
			spec:     "name: beta\ncommand: ./run.sh\ntcp:\n  - port: 443\n    tls: passthrough\n    hosts: [b.example.com, a.example.com]\n",
			wantPath: "tcp[0].hosts[1]", wantLine: 6, wantCol: 28, wantText: `TLS server name "a.example.com" on TCP port 443`,
		},
		{
			name:     "whole port on a shared one",
			owner:    "name: alpha\ncommand: ./run.sh\ntcp: [{port: 443, tls: passthrough, hosts: [a.example.com]}]\n",
			spec:     "name: beta\ncommand: ./run.sh\ntcp: [{port: 443}]\n",
			wantPath: "tcp[0].port", wantLine: 3, wantCol: 8, wantText: "TCP port 443 is shared by TLS server name",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.deploy(tc.owner, smallArtifact(t))
			body, ct := multipartBody(t,
				part{"spec", "beta.yaml", []byte(tc.spec)},
				part{"artifact", "artifact.tar.gz", smallArtifact(t)})
			e := wantError(t, h.request(http.MethodPost, "/v1/releases", body, ct), http.StatusConflict, api.CodePortInUse)
			if len(e.Details) != 1 {
				t.Fatalf("details = %+v, want one", e.Details)
			}
			d := e.Details[0]
			if d.File != "beta.yaml" || d.Path != tc.wantPath || d.Line != tc.wantLine || d.Column != tc.wantCol {
				t.Errorf("detail = %+v, want beta.yaml:%d:%d at %s", d, tc.wantLine, tc.wantCol, tc.wantPath)
			}
			for _, s := range []string{tc.wantText, `"alpha"`} {
				if !strings.Contains(d.Message, s) || !strings.Contains(e.Message, s) {
					t.Errorf("message %q / detail %q does not say %s", e.Message, d.Message, s)
				}
			}
			if _, err := h.store.App(context.Background(), "beta"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("app beta after a refused deploy: err = %v, want ErrNotFound", err)
			}
		})
	}
}

func TestDeployAndRollbackKeepPorts(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.deploy("name: alpha\ncommand: ./run.sh\ntcp: [{port: 25565, srv: minecraft}, {port: 443, tls: passthrough, hosts: [a.example.com, b.example.com]}]\n", smallArtifact(t))
	want := []store.TCPPort{{Port: 25565, SRV: "minecraft"}, {Port: 443, SNI: "a.example.com"}, {Port: 443, SNI: "b.example.com"}}
	a, err := h.store.App(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(a.TCP, want) {
		t.Fatalf("ports after deploy = %+v, want %+v", a.TCP, want)
	}
	h.finish("alpha", 1, "complete")
	h.deploy("name: alpha\ncommand: ./run.sh\n", smallArtifact(t))
	if a, _ = h.store.App(ctx, "alpha"); len(a.TCP) != 0 {
		t.Fatalf("ports after a deploy without tcp = %+v, want none", a.TCP)
	}
	h.finish("alpha", 2, "complete")
	resp := h.postJSON("/v1/apps/alpha/rollback", `{"to": 1}`)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("rollback: status %d", resp.StatusCode)
	}
	if a, _ = h.store.App(ctx, "alpha"); !reflect.DeepEqual(a.TCP, want) {
		t.Errorf("ports after rollback = %+v, want %+v", a.TCP, want)
	}
}
