package api_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/store"
)

func TestDeployCreatesRelease(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	art := smallArtifact(t)
	specYAML := "name: hello\ncommand: ./run.sh\nhosts: [www.example.com]\n"

	rel := h.deploy(specYAML, art)
	if rel.App != "hello" || rel.Number != 1 || rel.Status != store.StatusPending {
		t.Errorf("release = %+v, want hello release 1, pending", rel)
	}
	if len(rel.Artifact) != 64 {
		t.Errorf("release artifact = %q, want a sha256 digest", rel.Artifact)
	}
	if rel.Spec != "" {
		t.Errorf("deploy answer carries the spec; only GET of one release should")
	}
	if got := h.wokenApps(); !slices.Equal(got, []string{"hello"}) {
		t.Errorf("Wake calls = %v, want [hello]", got)
	}

	a, err := h.store.App(ctx, "hello")
	if err != nil {
		t.Fatalf("app after deploy: %v", err)
	}
	if a.Target != 1 || a.Replicas != 1 {
		t.Errorf("app = %+v, want target 1 and the default of 1 replica", a)
	}
	if want := []string{"hello.apps.test", "www.example.com"}; !slices.Equal(a.Hosts, want) {
		t.Errorf("hosts = %v, want %v (default host first)", a.Hosts, want)
	}
	stored, err := h.store.Release(ctx, "hello", 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(stored.Spec) != specYAML || stored.SpecFile != "skiff.yaml" || stored.Artifact != rel.Artifact {
		t.Errorf("stored release = %+v, want the uploaded spec and artifact %s", stored, rel.Artifact)
	}
	if !h.artifacts.Has(rel.Artifact) {
		t.Errorf("artifact %s is not in the artifact store", rel.Artifact)
	}

	// A second deploy is release 2 of the same app.
	rel2 := h.deploy(specYAML, packFiles(t, map[string]string{"run.sh": "v2"}))
	if rel2.Number != 2 || rel2.Artifact == rel.Artifact {
		t.Errorf("second release = %+v, want number 2 with its own artifact", rel2)
	}
}

func TestDeployInvalidSpec(t *testing.T) {
	tests := []struct {
		name string
		file string
		spec string
		want []api.ErrorDetail
	}{
		{
			name: "two errors, two details",
			file: "web/skiff.yaml",
			spec: "name: Hello_World\ncommand: ./run.sh\nport: 70000\n",
			want: []api.ErrorDetail{
				{File: "web/skiff.yaml", Line: 1, Column: 1, Path: "name",
					Message: `"Hello_World" is not a valid name: use 1-32 lowercase letters, digits and '-', starting and ending with a letter or digit`},
				{File: "web/skiff.yaml", Line: 3, Column: 1, Path: "port",
					Message: "must be between 1 and 65535, got 70000 (leave it out to get a free port in $PORT)"},
			},
		},
		{
			name: "nested field",
			file: "skiff.yaml",
			spec: "name: hello\ncommand: ./run.sh\nhealth:\n  interval: soon\n",
			want: []api.ErrorDetail{
				{File: "skiff.yaml", Line: 4, Column: 3, Path: "health.interval"},
			},
		},
		{
			name: "unknown field",
			file: "skiff.yaml",
			spec: "name: hello\ncommand: ./run.sh\nimag: nginx\n",
			want: []api.ErrorDetail{
				{File: "skiff.yaml", Line: 3, Column: 1, Message: `unknown field "imag" (did you mean "image"?)`},
			},
		},
		{
			name: "field not supported yet",
			file: "skiff.yaml",
			spec: "name: hello\ncommand: ./run.sh\nautoscale: {max: 3}\nsecrets: [TOKEN]\n",
			want: []api.ErrorDetail{
				{File: "skiff.yaml", Line: 3, Column: 1, Path: "autoscale", Message: "not supported yet"},
				{File: "skiff.yaml", Line: 4, Column: 1, Path: "secrets", Message: "not supported yet"},
			},
		},
		{
			name: "YAML syntax",
			file: "skiff.yaml",
			spec: "name: hello\ncommand: [./run.sh\n",
			want: []api.ErrorDetail{{File: "skiff.yaml", Line: 2}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			body, ct := multipartBody(t,
				part{"spec", tc.file, []byte(tc.spec)},
				part{"artifact", "artifact.tar.gz", smallArtifact(t)})
			e := wantError(t, h.request(http.MethodPost, "/v1/releases", body, ct), http.StatusBadRequest, api.CodeInvalidSpec)
			if len(e.Details) != len(tc.want) {
				t.Fatalf("details = %+v, want %d of them", e.Details, len(tc.want))
			}
			for i, want := range tc.want {
				got := e.Details[i]
				if got.File != want.File || got.Line != want.Line || got.Path != want.Path {
					t.Errorf("detail %d = %+v, want file %q line %d path %q", i, got, want.File, want.Line, want.Path)
				}
				if want.Column != 0 && got.Column != want.Column {
					t.Errorf("detail %d column = %d, want %d", i, got.Column, want.Column)
				}
				if got.Line == 0 || got.Column == 0 {
					t.Errorf("detail %d = %+v has no position", i, got)
				}
				if want.Message != "" && got.Message != want.Message {
					t.Errorf("detail %d message = %q, want %q", i, got.Message, want.Message)
				}
				if got.Message == "" {
					t.Errorf("detail %d has no message", i)
				}
				// The summary names every problem with its place.
				if !strings.Contains(e.Message, got.Message) {
					t.Errorf("message %q leaves out detail %q", e.Message, got.Message)
				}
			}
			h.assertEmptyStore()
			if w := h.wokenApps(); len(w) != 0 {
				t.Errorf("Wake called with %v for a refused deploy", w)
			}
		})
	}
}

func TestDeployHostInUse(t *testing.T) {
	tests := []struct {
		name     string
		owner    string // spec of the app that owns the host
		spec     string // spec deployed second
		wantPath string
		wantLine int
		wantCol  int
		wantHost string
	}{
		{
			name:     "extra host",
			owner:    "name: alpha\ncommand: ./run.sh\nhosts: [www.example.com]\n",
			spec:     "name: beta\ncommand: ./run.sh\nhosts:\n  - api.example.com\n  - www.example.com\n",
			wantPath: "hosts[1]", wantLine: 5, wantCol: 5, wantHost: "www.example.com",
		},
		{
			name:     "default host",
			owner:    "name: alpha\ncommand: ./run.sh\nhosts: [beta.apps.test]\n",
			spec:     "command: ./run.sh\nname: beta\n",
			wantPath: "name", wantLine: 2, wantCol: 1, wantHost: "beta.apps.test",
		},
		{
			name:     "another app's default host",
			owner:    "name: alpha\ncommand: ./run.sh\n",
			spec:     "name: beta\ncommand: ./run.sh\nhosts: [alpha.apps.test]\n",
			wantPath: "hosts[0]", wantLine: 3, wantCol: 9, wantHost: "alpha.apps.test",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ctx := context.Background()
			first := h.deploy(tc.owner, smallArtifact(t))
			artsBefore := h.storedArtifacts()
			evsBefore, err := h.store.Events(ctx, store.EventQuery{})
			if err != nil {
				t.Fatal(err)
			}

			body, ct := multipartBody(t,
				part{"spec", "beta.yaml", []byte(tc.spec)},
				part{"artifact", "artifact.tar.gz", packFiles(t, map[string]string{"other": "x"})})
			e := wantError(t, h.request(http.MethodPost, "/v1/releases", body, ct), http.StatusConflict, api.CodeHostInUse)
			if len(e.Details) != 1 {
				t.Fatalf("details = %+v, want one", e.Details)
			}
			d := e.Details[0]
			if d.File != "beta.yaml" || d.Path != tc.wantPath || d.Line != tc.wantLine || d.Column != tc.wantCol {
				t.Errorf("detail = %+v, want beta.yaml:%d:%d at %s", d, tc.wantLine, tc.wantCol, tc.wantPath)
			}
			for _, s := range []string{tc.wantHost, `"alpha"`} {
				if !strings.Contains(d.Message, s) || !strings.Contains(e.Message, s) {
					t.Errorf("message %q / detail %q does not name %s", e.Message, d.Message, s)
				}
			}

			// Nothing changed: no app beta, alpha as it was, no new file.
			if _, err := h.store.App(ctx, "beta"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("app beta after a refused deploy: err = %v, want ErrNotFound", err)
			}
			rels, err := h.store.Releases(ctx, "alpha")
			if err != nil {
				t.Fatal(err)
			}
			if len(rels) != 1 || rels[0].Number != first.Number {
				t.Errorf("alpha's releases = %d, want just release 1", len(rels))
			}
			if got := h.storedArtifacts(); !slices.Equal(got, artsBefore) {
				t.Errorf("artifacts = %v, want unchanged %v", got, artsBefore)
			}
			evs, err := h.store.Events(ctx, store.EventQuery{})
			if err != nil {
				t.Fatal(err)
			}
			if len(evs) != len(evsBefore) {
				t.Errorf("events grew from %d to %d on a refused deploy", len(evsBefore), len(evs))
			}
		})
	}

	t.Run("same app keeps its hosts", func(t *testing.T) {
		h := newHarness(t)
		spec := "name: alpha\ncommand: ./run.sh\nhosts: [www.example.com]\n"
		h.deploy(spec, smallArtifact(t))
		if rel := h.deploy(spec, smallArtifact(t)); rel.Number != 2 {
			t.Errorf("redeploy = release %d, want 2", rel.Number)
		}
	})
}

func TestDeployTooLarge(t *testing.T) {
	h := newHarness(t, withMaxUpload(1024))
	// Random bytes do not compress: the archive is well over 1 KiB.
	noise := make([]byte, 8<<10)
	rand.Read(noise)
	art := packFiles(t, map[string]string{"blob": string(noise)})
	if len(art) <= 1024 {
		t.Fatalf("test artifact is only %d bytes", len(art))
	}
	body, ct := multipartBody(t,
		part{"spec", "skiff.yaml", []byte("name: hello\ncommand: ./run.sh\n")},
		part{"artifact", "artifact.tar.gz", art})
	e := wantError(t, h.request(http.MethodPost, "/v1/releases", body, ct), http.StatusRequestEntityTooLarge, api.CodeTooLarge)
	if !strings.Contains(e.Message, ".skiffignore") {
		t.Errorf("message %q does not say how to make the upload smaller", e.Message)
	}
	h.assertEmptyStore()

	// Under the limit the same server accepts a deploy.
	if rel := h.deploy("name: hello\ncommand: ./run.sh\n", smallArtifact(t)); rel.Number != 1 {
		t.Errorf("small deploy = release %d, want 1", rel.Number)
	}
}

func TestDeployBadUpload(t *testing.T) {
	spec := []byte("name: hello\ncommand: ./run.sh\n")
	tests := []struct {
		name  string
		body  func(t *testing.T, art []byte) ([]byte, string)
		words string // the message must say this
	}{
		{
			name: "not multipart",
			body: func(t *testing.T, art []byte) ([]byte, string) {
				return []byte(`{"spec": "name: hello"}`), "application/json"
			},
			words: "multipart",
		},
		{
			name: "no parts",
			body: func(t *testing.T, art []byte) ([]byte, string) {
				return multipartBytes(t)
			},
			words: `"spec"`,
		},
		{
			name: "artifact before spec",
			body: func(t *testing.T, art []byte) ([]byte, string) {
				return multipartBytes(t, part{"artifact", "a.tar.gz", art}, part{"spec", "skiff.yaml", spec})
			},
			words: `"spec"`,
		},
		{
			name: "spec without artifact",
			body: func(t *testing.T, art []byte) ([]byte, string) {
				return multipartBytes(t, part{"spec", "skiff.yaml", spec})
			},
			words: `"artifact"`,
		},
		{
			name: "artifact part misnamed",
			body: func(t *testing.T, art []byte) ([]byte, string) {
				return multipartBytes(t, part{"spec", "skiff.yaml", spec}, part{"file", "a.tar.gz", art})
			},
			words: `"artifact"`,
		},
		{
			name: "artifact not an archive",
			body: func(t *testing.T, art []byte) ([]byte, string) {
				return multipartBytes(t, part{"spec", "skiff.yaml", spec}, part{"artifact", "a.tar.gz", []byte("hello, not gzip")})
			},
			words: "artifact",
		},
		{
			name: "artifact cut short",
			body: func(t *testing.T, art []byte) ([]byte, string) {
				return multipartBytes(t, part{"spec", "skiff.yaml", spec}, part{"artifact", "a.tar.gz", art[:len(art)/2]})
			},
			words: "artifact",
		},
		{
			name: "artifact with an unsafe path",
			body: func(t *testing.T, art []byte) ([]byte, string) {
				return multipartBytes(t, part{"spec", "skiff.yaml", spec}, part{"artifact", "a.tar.gz", unsafeArchive(t)})
			},
			words: "..",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			body, ct := tc.body(t, smallArtifact(t))
			e := wantError(t, h.request(http.MethodPost, "/v1/releases", bytes.NewReader(body), ct), http.StatusBadRequest, api.CodeBadRequest)
			if !strings.Contains(e.Message, tc.words) {
				t.Errorf("message %q does not mention %s", e.Message, tc.words)
			}
			h.assertEmptyStore()
		})
	}
}

func multipartBytes(t *testing.T, parts ...part) ([]byte, string) {
	t.Helper()
	r, ct := multipartBody(t, parts...)
	return r.(*bytes.Buffer).Bytes(), ct
}

// TestDeployKeepsReplicas checks that a deploy leaves the replica count
// alone unless the spec's replicas changed since the last release.
func TestDeployKeepsReplicas(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	art := smallArtifact(t)
	replicas := func() int {
		t.Helper()
		a, err := h.store.App(ctx, "hello")
		if err != nil {
			t.Fatal(err)
		}
		return a.Replicas
	}
	two := "name: hello\ncommand: ./run.sh\nreplicas: 2\n"
	h.deploy(two, art)
	if got := replicas(); got != 2 {
		t.Fatalf("replicas after first deploy = %d, want 2", got)
	}
	if _, err := h.client.Scale(ctx, "hello", 5); err != nil {
		t.Fatal(err)
	}
	h.deploy(two, art)
	if got := replicas(); got != 5 {
		t.Errorf("replicas after a deploy of the same spec = %d, want 5 (scaled)", got)
	}
	h.deploy("name: hello\ncommand: ./run.sh\n", art)
	if got := replicas(); got != 5 {
		t.Errorf("replicas after a deploy without replicas = %d, want 5", got)
	}
	h.deploy("name: hello\ncommand: ./run.sh\nreplicas: 3\n", art)
	if got := replicas(); got != 3 {
		t.Errorf("replicas after a deploy with replicas 3 = %d, want 3", got)
	}
	if _, err := h.client.Scale(ctx, "hello", 4); err != nil {
		t.Fatal(err)
	}
	h.deploy("name: hello\ncommand: ./run.sh\nreplicas: 3\n", art)
	if got := replicas(); got != 4 {
		t.Errorf("replicas after redeploying replicas 3 = %d, want 4 (scaled)", got)
	}
}

// unsafeArchive is a gzip'd tar whose entry climbs out of the tree.
func unsafeArchive(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	data := []byte("owned")
	if err := tw.WriteHeader(&tar.Header{Name: "../evil", Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write(data)
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// TestDeployWhileDestroying checks that a deploy to an app being destroyed
// is refused before its artifact is stored: the destroy would never clean
// up an archive no release refers to.
func TestDeployWhileDestroying(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.deploy("name: hello\ncommand: ./run.sh\n", smallArtifact(t))
	if err := h.client.Destroy(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	before := h.storedArtifacts()

	_, err := h.client.Deploy(ctx, "skiff.yaml", []byte("name: hello\ncommand: ./run.sh\n"),
		bytes.NewReader(packFiles(t, map[string]string{"new": "content"})))
	e := wantAPIError(t, err, api.CodeConflict)
	if !strings.Contains(e.Message, "destroyed") {
		t.Errorf("message %q does not say the app is being destroyed", e.Message)
	}
	if got := h.storedArtifacts(); !slices.Equal(got, before) {
		t.Errorf("artifacts = %v after a refused deploy, want %v", got, before)
	}
	rels, err := h.store.Releases(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if len(rels) != 1 {
		t.Errorf("releases = %d, want 1", len(rels))
	}
}
