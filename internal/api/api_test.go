package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/artifact"
	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/controller"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/logs"
	"github.com/skiff-sh/skiff/internal/store"
)

// testToken is the admin token every test server accepts.
const testToken = "s3cret-token-for-tests"

// fakeObserver reports fixed instance sets per app.
type fakeObserver struct {
	mu   sync.Mutex
	sets map[string][]instance.Set
}

func (o *fakeObserver) RolloutStatus(ctx context.Context, app string) (controller.RolloutStatus, error) {
	return controller.RolloutStatus{App: app, Status: "pending", Strategy: "canary"}, nil
}

func (o *fakeObserver) Sets(ctx context.Context, app string) ([]instance.Set, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.sets[app]), nil
}

// fakeLogs records the queries it gets and answers with fixed lines.
type fakeLogs struct {
	mu      sync.Mutex
	queries []logs.Query
	apps    []string
	lines   []logs.Line
}

func (l *fakeLogs) Read(ctx context.Context, app string, q logs.Query, fn func(logs.Line) error) error {
	l.mu.Lock()
	l.queries = append(l.queries, q)
	l.apps = append(l.apps, app)
	lines := slices.Clone(l.lines)
	l.mu.Unlock()
	for _, line := range lines {
		if err := fn(line); err != nil {
			return err
		}
	}
	return nil
}

func (l *fakeLogs) calls() ([]string, []logs.Query) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.apps), slices.Clone(l.queries)
}

// harness is a real api.Server over httptest with a real store and
// artifact store.
type harness struct {
	t         *testing.T
	store     *store.Store
	artifacts *artifact.Store
	artDir    string
	observer  *fakeObserver
	logs      *fakeLogs
	srv       *api.Server
	ts        *httptest.Server
	client    *client.Client

	mu    sync.Mutex
	wakes []string
}

type harnessOption func(*api.Config)

func withMaxUpload(n int64) harnessOption { return func(c *api.Config) { c.MaxUpload = n } }

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "skiff.db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	artDir := filepath.Join(dir, "artifacts")
	arts, err := artifact.NewStore(artDir)
	if err != nil {
		t.Fatalf("open artifact store: %v", err)
	}
	h := &harness{
		t: t, store: st, artifacts: arts, artDir: artDir,
		observer: &fakeObserver{sets: map[string][]instance.Set{}},
		logs:     &fakeLogs{},
	}
	cfg := api.Config{
		Store: st, Artifacts: arts, Observer: h.observer, Logs: h.logs,
		Domain: "apps.test", EdgeURL: "http://%s:8080", MaxUpload: 1 << 20,
		TokenHash: api.HashToken(testToken),
		Logger:    slog.New(slog.DiscardHandler),
		Wake: func(app string) {
			h.mu.Lock()
			h.wakes = append(h.wakes, app)
			h.mu.Unlock()
		},
	}
	for _, o := range opts {
		o(&cfg)
	}
	h.srv = api.New(cfg)
	h.ts = httptest.NewServer(h.srv.Handler())
	t.Cleanup(h.ts.Close)
	h.client, err = client.New(h.ts.URL, testToken)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	return h
}

func (h *harness) wokenApps() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.wakes)
}

// request sends a raw request with the test token.
func (h *harness) request(method, path string, body io.Reader, contentType string) *http.Response {
	h.t.Helper()
	return h.requestAs(testToken, method, path, body, contentType)
}

func (h *harness) requestAs(token, method, path string, body io.Reader, contentType string) *http.Response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.ts.URL+path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := h.ts.Client().Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	h.t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// postJSON sends body as a JSON request.
func (h *harness) postJSON(path, body string) *http.Response {
	h.t.Helper()
	return h.request(http.MethodPost, path, strings.NewReader(body), "application/json")
}

// deploy uploads a spec and an artifact through the client.
func (h *harness) deploy(specYAML string, art []byte) api.Release {
	h.t.Helper()
	rel, err := h.client.Deploy(context.Background(), "skiff.yaml", []byte(specYAML), bytes.NewReader(art))
	if err != nil {
		h.t.Fatalf("deploy: %v", err)
	}
	return rel
}

// finish marks a release as the controller would.
func (h *harness) finish(app string, n int, status string) {
	h.t.Helper()
	if err := h.store.FinishRelease(context.Background(), app, n, status, status+" in test"); err != nil {
		h.t.Fatalf("finish release %d: %v", n, err)
	}
}

// storedArtifacts lists the archive files in the artifact store,
// leftover uploads included.
func (h *harness) storedArtifacts() []string {
	h.t.Helper()
	ents, err := os.ReadDir(h.artDir)
	if err != nil {
		h.t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// assertEmptyStore fails unless the store holds no app, no event and no
// artifact: a refused request changed nothing.
func (h *harness) assertEmptyStore() {
	h.t.Helper()
	ctx := context.Background()
	apps, err := h.store.Apps(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	if len(apps) != 0 {
		h.t.Errorf("store has apps %v after a refused request, want none", apps)
	}
	evs, err := h.store.Events(ctx, store.EventQuery{})
	if err != nil {
		h.t.Fatal(err)
	}
	if len(evs) != 0 {
		h.t.Errorf("store has %d events after a refused request, want none", len(evs))
	}
	if names := h.storedArtifacts(); len(names) != 0 {
		h.t.Errorf("artifact store holds %v after a refused request, want nothing", names)
	}
}

// packFiles packs a directory holding files into an artifact.
func packFiles(t *testing.T, files map[string]string) []byte {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := artifact.Pack(&buf, dir, 0); err != nil {
		t.Fatalf("pack: %v", err)
	}
	return buf.Bytes()
}

// smallArtifact is a valid artifact holding one script.
func smallArtifact(t *testing.T) []byte {
	return packFiles(t, map[string]string{"run.sh": "#!/bin/sh\nexec sleep 1000\n"})
}

// part is one part of a multipart upload.
type part struct {
	name, filename string
	data           []byte
}

func multipartBody(t *testing.T, parts ...part) (io.Reader, string) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, p := range parts {
		w, err := mw.CreateFormFile(p.name, p.filename)
		if err != nil {
			t.Fatal(err)
		}
		w.Write(p.data)
	}
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf, mw.FormDataContentType()
}

// wantError checks that resp is a JSON error answer with status and code
// and a message, and returns it.
func wantError(t *testing.T, resp *http.Response, status int, code string) api.Error {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d; body: %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var e api.Error
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		t.Fatalf("error body is not an api.Error: %v; body: %s", err, body)
	}
	if e.Code != code {
		t.Errorf("code = %q, want %q; message: %s", e.Code, code, e.Message)
	}
	if strings.TrimSpace(e.Message) == "" {
		t.Errorf("error answer %s has no message", body)
	}
	return e
}

// wantAPIError checks that err, from the client, is an *api.Error with code.
func wantAPIError(t *testing.T, err error, code string) *api.Error {
	t.Helper()
	var e *api.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want *api.Error with code %q", err, err, code)
	}
	if e.Code != code {
		t.Fatalf("code = %q, want %q; message: %s", e.Code, code, e.Message)
	}
	if e.Message == "" {
		t.Errorf("api error with code %q has no message", code)
	}
	return e
}

func decodeJSON[T any](t *testing.T, resp *http.Response, status int) T {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status {
		t.Fatalf("status = %d, want %d; body: %s", resp.StatusCode, status, body)
	}
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

func TestHashToken(t *testing.T) {
	tests := []struct {
		name, token, want string
	}{
		// FIPS 180-2 test vectors: the hash is plain hex SHA-256, so an
		// admin can compute it with sha256sum.
		{"abc", "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"empty", "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := api.HashToken(tc.token); got != tc.want {
				t.Errorf("HashToken(%q) = %s, want %s", tc.token, got, tc.want)
			}
		})
	}
	if api.HashToken("a") == api.HashToken("b") {
		t.Error("different tokens hash alike")
	}
}

// endpoints is every route of the API with a request that would succeed
// or fail on its merits once authorized.
var endpoints = []struct{ method, path string }{
	{http.MethodGet, "/v1/apps"},
	{http.MethodGet, "/v1/apps/hello"},
	{http.MethodDelete, "/v1/apps/hello"},
	{http.MethodPost, "/v1/releases"},
	{http.MethodGet, "/v1/apps/hello/releases"},
	{http.MethodGet, "/v1/apps/hello/releases/1"},
	{http.MethodPost, "/v1/apps/hello/rollback"},
	{http.MethodPost, "/v1/apps/hello/scale"},
	{http.MethodGet, "/v1/apps/hello/logs"},
	{http.MethodGet, "/v1/events"},
	{http.MethodGet, "/v1/nothing-here"},
}

func TestAuth(t *testing.T) {
	h := newHarness(t)
	h.deploy("name: hello\ncommand: ./run.sh\n", smallArtifact(t))

	t.Run("health is open", func(t *testing.T) {
		resp := h.requestAs("", http.MethodGet, "/v1/health", nil, "")
		got := decodeJSON[map[string]string](t, resp, http.StatusOK)
		if got["status"] != "ok" {
			t.Errorf("health = %v, want status ok", got)
		}
	})

	tokens := []struct {
		name   string
		header string
	}{
		{"no header", ""},
		{"wrong token", "Bearer not-the-token"},
		{"empty bearer", "Bearer "},
		{"token without scheme", testToken},
		{"basic scheme", "Basic " + testToken},
		{"hash instead of token", "Bearer " + api.HashToken(testToken)},
	}
	for _, ep := range endpoints {
		for _, tok := range tokens {
			t.Run(ep.method+" "+ep.path+"/"+tok.name, func(t *testing.T) {
				req, err := http.NewRequest(ep.method, h.ts.URL+ep.path, strings.NewReader(`{"replicas": 0}`))
				if err != nil {
					t.Fatal(err)
				}
				if tok.header != "" {
					req.Header.Set("Authorization", tok.header)
				}
				resp, err := h.ts.Client().Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				wantError(t, resp, http.StatusUnauthorized, api.CodeUnauthorized)
				if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, "Bearer") {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", got)
				}
			})
		}
	}

	// Nothing a refused request asked for happened.
	a, err := h.store.App(context.Background(), "hello")
	if err != nil {
		t.Fatal(err)
	}
	if a.Deleting || a.Replicas != 1 || a.Target != 1 {
		t.Errorf("app after refused requests = %+v, want unchanged (replicas 1, target 1, not deleting)", a)
	}

	t.Run("right token", func(t *testing.T) {
		apps, err := h.client.Apps(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(apps) != 1 || apps[0].Name != "hello" {
			t.Errorf("apps = %+v, want hello", apps)
		}
	})

	t.Run("client with wrong token", func(t *testing.T) {
		c, err := client.New(h.ts.URL, "wrong")
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Apps(context.Background())
		wantAPIError(t, err, api.CodeUnauthorized)
	})

	t.Run("local handler needs no token", func(t *testing.T) {
		local := httptest.NewServer(h.srv.LocalHandler())
		defer local.Close()
		c, err := client.New(local.URL, "")
		if err != nil {
			t.Fatal(err)
		}
		apps, err := c.Apps(context.Background())
		if err != nil {
			t.Fatalf("apps over the local handler without token: %v", err)
		}
		if len(apps) != 1 {
			t.Errorf("apps = %+v, want one", apps)
		}
	})
}

// TestNoTokenConfigured checks that a server without a token hash refuses
// every request on the TCP handler, even one with an empty token, whose
// hash an empty TokenHash must not be mistaken for.
func TestNoTokenConfigured(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv := api.New(api.Config{Store: st, Observer: &fakeObserver{}, Logs: &fakeLogs{}, Domain: "apps.test", EdgeURL: "http://%s"})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	for _, header := range []string{"", "Bearer ", "Bearer x"} {
		req, _ := http.NewRequest(http.MethodGet, ts.URL+"/v1/apps", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		resp, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		wantError(t, resp, http.StatusUnauthorized, api.CodeUnauthorized)
		resp.Body.Close()
	}
}

func TestUnknownEndpoint(t *testing.T) {
	h := newHarness(t)
	tests := []struct{ name, method, path string }{
		{"unknown path", http.MethodGet, "/v1/nothing"},
		{"outside v1", http.MethodGet, "/"},
		{"wrong method", http.MethodPut, "/v1/apps"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.request(tc.method, tc.path, nil, "")
			e := wantError(t, resp, http.StatusNotFound, api.CodeNotFound)
			if !strings.Contains(e.Message, tc.path) {
				t.Errorf("message %q does not name the path %s", e.Message, tc.path)
			}
		})
	}
}
