package api_test

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/store"
)

func TestScale(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.deploy("name: hello\ncommand: ./run.sh\n", smallArtifact(t))

	refused := []struct {
		name, body string
		words      string
	}{
		{"negative", `{"replicas": -1}`, "between 0 and 100, got -1"},
		{"above 100", `{"replicas": 101}`, "between 0 and 100, got 101"},
		{"missing", `{}`, `"replicas"`},
		{"empty body", ``, `"replicas"`},
		{"null", `{"replicas": null}`, `"replicas"`},
		{"not a number", `{"replicas": "3"}`, "invalid JSON"},
		{"unknown field", `{"replica": 3}`, `unknown field "replica"`},
		{"not JSON", `three`, "invalid JSON"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			e := wantError(t, h.postJSON("/v1/apps/hello/scale", tc.body), http.StatusBadRequest, api.CodeBadRequest)
			if !strings.Contains(e.Message, tc.words) {
				t.Errorf("message %q does not say %q", e.Message, tc.words)
			}
		})
	}
	a, err := h.store.App(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if a.Replicas != 1 {
		t.Fatalf("replicas after refused scales = %d, want 1", a.Replicas)
	}
	wakesBefore := len(h.wokenApps())

	for _, n := range []int{0, 100, 3} {
		got, err := h.client.Scale(ctx, "hello", n)
		if err != nil {
			t.Fatalf("scale to %d: %v", n, err)
		}
		if got.Name != "hello" || got.Replicas != n {
			t.Errorf("scale answer = %+v, want hello with %d replicas", got, n)
		}
		a, err := h.store.App(ctx, "hello")
		if err != nil {
			t.Fatal(err)
		}
		if a.Replicas != n {
			t.Errorf("stored replicas = %d, want %d", a.Replicas, n)
		}
	}
	if got := h.wokenApps()[wakesBefore:]; !slices.Equal(got, []string{"hello", "hello", "hello"}) {
		t.Errorf("Wake calls after three scales = %v", got)
	}
	evs, err := h.store.Events(ctx, store.EventQuery{App: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if last := evs[len(evs)-1]; last.Kind != "app.scaled" || !strings.Contains(last.Message, "100 to 3") {
		t.Errorf("last event = %+v, want app.scaled from 100 to 3", last)
	}

	t.Run("unknown app", func(t *testing.T) {
		e := wantError(t, h.postJSON("/v1/apps/nope/scale", `{"replicas": 2}`), http.StatusNotFound, api.CodeNotFound)
		if !strings.Contains(e.Message, `"nope"`) {
			t.Errorf("message %q does not name the app", e.Message)
		}
	})
	t.Run("app being destroyed", func(t *testing.T) {
		if err := h.client.Destroy(ctx, "hello"); err != nil {
			t.Fatal(err)
		}
		wantError(t, h.postJSON("/v1/apps/hello/scale", `{"replicas": 2}`), http.StatusConflict, api.CodeConflict)
	})
}

// rollbackApp deploys hello with releases in the given final states, each
// with an artifact of its own, and returns the artifacts by release.
func rollbackApp(t *testing.T, h *harness, statuses ...string) map[int]string {
	t.Helper()
	arts := map[int]string{}
	for i, status := range statuses {
		rel := h.deploy("name: hello\ncommand: ./run.sh\n",
			packFiles(t, map[string]string{"version": strings.Repeat("v", i+1)}))
		arts[rel.Number] = rel.Artifact
		if status != store.StatusPending {
			h.finish("hello", rel.Number, status)
		}
	}
	return arts
}

func TestRollback(t *testing.T) {
	const (
		complete = store.StatusComplete
		failed   = store.StatusFailed
		pending  = store.StatusPending
	)
	tests := []struct {
		name     string
		statuses []string // of releases 1, 2, ...
		to       int
		want     int // the release copied
	}{
		{"to the release before stable", []string{complete, complete}, 0, 1},
		{"skips failed releases", []string{complete, failed, complete}, 0, 1},
		{"from a pending deploy back to stable", []string{complete, complete, pending}, 0, 2},
		{"after a failed deploy", []string{complete, complete, failed}, 0, 1},
		{"to a named release", []string{complete, complete, complete}, 1, 1},
		{"to a failed release when named", []string{complete, failed, complete}, 2, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ctx := context.Background()
			arts := rollbackApp(t, h, tc.statuses...)
			next := len(tc.statuses) + 1
			wakes := len(h.wokenApps())

			rel, err := h.client.Rollback(ctx, "hello", tc.to)
			if err != nil {
				t.Fatalf("rollback: %v", err)
			}
			if rel.Number != next || rel.RollbackOf != tc.want || rel.Artifact != arts[tc.want] || rel.Status != pending {
				t.Errorf("rollback release = %+v, want release %d, pending, rollback_of %d with artifact %s",
					rel, next, tc.want, arts[tc.want])
			}
			stored, err := h.store.Release(ctx, "hello", next)
			if err != nil {
				t.Fatal(err)
			}
			if stored.RollbackOf != tc.want || stored.Artifact != arts[tc.want] {
				t.Errorf("stored release = %+v, want rollback_of %d", stored, tc.want)
			}
			a, err := h.store.App(ctx, "hello")
			if err != nil {
				t.Fatal(err)
			}
			if a.Target != next {
				t.Errorf("target = %d, want %d", a.Target, next)
			}
			if got := h.wokenApps()[wakes:]; !slices.Equal(got, []string{"hello"}) {
				t.Errorf("Wake calls = %v, want [hello]", got)
			}
		})
	}

	refused := []struct {
		name     string
		statuses []string
		to       int
		status   int
		code     string
		words    string
	}{
		{"only one good release", []string{complete}, 0, http.StatusConflict, api.CodeConflict, "--to"},
		{"no good release at all", []string{failed, pending}, 0, http.StatusConflict, api.CodeConflict, "--to"},
		{"only later releases are good", []string{failed, complete}, 0, http.StatusConflict, api.CodeConflict, "no earlier good release"},
		{"unknown release", []string{complete, complete}, 7, http.StatusNotFound, api.CodeNotFound, "no release 7"},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			rollbackApp(t, h, tc.statuses...)
			body := `{}`
			if tc.to != 0 {
				body = `{"to": 7}`
			}
			e := wantError(t, h.postJSON("/v1/apps/hello/rollback", body), tc.status, tc.code)
			if !strings.Contains(e.Message, tc.words) {
				t.Errorf("message %q does not say %q", e.Message, tc.words)
			}
			rels, err := h.store.Releases(context.Background(), "hello")
			if err != nil {
				t.Fatal(err)
			}
			if len(rels) != len(tc.statuses) {
				t.Errorf("releases = %d after a refused rollback, want %d", len(rels), len(tc.statuses))
			}
		})
	}

	t.Run("bad body", func(t *testing.T) {
		h := newHarness(t)
		rollbackApp(t, h, complete, complete)
		wantError(t, h.postJSON("/v1/apps/hello/rollback", `{"to": "one"}`), http.StatusBadRequest, api.CodeBadRequest)
		wantError(t, h.postJSON("/v1/apps/hello/rollback", `{"release": 1}`), http.StatusBadRequest, api.CodeBadRequest)
	})
	t.Run("unknown app", func(t *testing.T) {
		h := newHarness(t)
		wantError(t, h.postJSON("/v1/apps/nope/rollback", `{}`), http.StatusNotFound, api.CodeNotFound)
	})
	t.Run("keeps the replica count", func(t *testing.T) {
		h := newHarness(t)
		ctx := context.Background()
		h.deploy("name: hello\ncommand: ./run.sh\nreplicas: 2\n", smallArtifact(t))
		h.finish("hello", 1, complete)
		h.deploy("name: hello\ncommand: ./run.sh\nreplicas: 2\n", packFiles(t, map[string]string{"v": "2"}))
		h.finish("hello", 2, complete)
		if _, err := h.client.Scale(ctx, "hello", 6); err != nil {
			t.Fatal(err)
		}
		if _, err := h.client.Rollback(ctx, "hello", 0); err != nil {
			t.Fatal(err)
		}
		a, err := h.store.App(ctx, "hello")
		if err != nil {
			t.Fatal(err)
		}
		if a.Replicas != 6 {
			t.Errorf("replicas after rollback = %d, want 6", a.Replicas)
		}
	})
}

func TestReleases(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	specs := []string{
		"name: hello\ncommand: ./run.sh\n",
		"name: hello\ncommand: ./run.sh --v2\n",
	}
	h.deploy(specs[0], smallArtifact(t))
	h.finish("hello", 1, store.StatusComplete)
	h.deploy(specs[1], smallArtifact(t))

	rels, err := h.client.Releases(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if len(rels) != 2 || rels[0].Number != 2 || rels[1].Number != 1 {
		t.Fatalf("releases = %+v, want 2 then 1", rels)
	}
	if rels[1].Status != store.StatusComplete || rels[1].Finished.IsZero() || rels[0].Status != store.StatusPending {
		t.Errorf("statuses = %q (finished %v), %q; want complete with a finish time, then pending",
			rels[1].Status, rels[1].Finished, rels[0].Status)
	}
	for _, rel := range rels {
		if rel.Spec != "" {
			t.Errorf("release %d in the list carries its spec", rel.Number)
		}
	}

	for i, sp := range specs {
		rel, err := h.client.Release(ctx, "hello", i+1)
		if err != nil {
			t.Fatal(err)
		}
		if rel.Number != i+1 || rel.Spec != sp || rel.App != "hello" {
			t.Errorf("release %d = %+v, want its spec %q", i+1, rel, sp)
		}
	}

	refused := []struct {
		name, path string
		status     int
		code       string
	}{
		{"unknown release", "/v1/apps/hello/releases/3", http.StatusNotFound, api.CodeNotFound},
		{"release zero", "/v1/apps/hello/releases/0", http.StatusBadRequest, api.CodeBadRequest},
		{"release not a number", "/v1/apps/hello/releases/latest", http.StatusBadRequest, api.CodeBadRequest},
		{"releases of unknown app", "/v1/apps/nope/releases", http.StatusNotFound, api.CodeNotFound},
		{"release of unknown app", "/v1/apps/nope/releases/1", http.StatusNotFound, api.CodeNotFound},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, h.request(http.MethodGet, tc.path, nil, ""), tc.status, tc.code)
		})
	}
}

func TestDestroy(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	h.deploy("name: hello\ncommand: ./run.sh\n", smallArtifact(t))
	wakes := len(h.wokenApps())

	resp := h.request(http.MethodDelete, "/v1/apps/hello", nil, "")
	got := decodeJSON[map[string]string](t, resp, http.StatusAccepted)
	if got["app"] != "hello" || got["status"] != "destroying" {
		t.Errorf("destroy answer = %v", got)
	}
	a, err := h.store.App(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if !a.Deleting {
		t.Error("app is not marked deleting")
	}
	if w := h.wokenApps()[wakes:]; !slices.Equal(w, []string{"hello"}) {
		t.Errorf("Wake calls = %v, want [hello]", w)
	}
	st, err := h.client.App(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Deleting || st.Status != "destroying" {
		t.Errorf("status = %+v, want destroying", st.App)
	}

	// Destroying again is accepted and changes nothing.
	if err := h.client.Destroy(ctx, "hello"); err != nil {
		t.Errorf("second destroy: %v", err)
	}
	evs, err := h.store.Events(ctx, store.EventQuery{App: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Kind == "app.destroying" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("%d app.destroying events, want 1", n)
	}

	e := wantError(t, h.request(http.MethodDelete, "/v1/apps/nope", nil, ""), http.StatusNotFound, api.CodeNotFound)
	if !strings.Contains(e.Message, `"nope"`) {
		t.Errorf("message %q does not name the app", e.Message)
	}
}

// TestAppStatus checks the status an app shows from its store record and
// what the observer reports.
func TestAppStatus(t *testing.T) {
	ready := func(id string, rel int) instance.Instance {
		return instance.Instance{ID: id, App: "hello", Release: rel, State: instance.Ready}
	}
	tests := []struct {
		name      string
		finish    bool // mark release 1 complete
		replicas  int
		sets      []instance.Set
		wantReady int
		want      string
	}{
		{"deploying", false, 1, nil, 0, "deploying release 1"},
		{"running", true, 2, []instance.Set{{App: "hello", Release: 1, Size: 2,
			Instances: []instance.Instance{ready("a", 1), ready("b", 1)}}}, 2, "running"},
		{"degraded", true, 2, []instance.Set{{App: "hello", Release: 1, Size: 2,
			Instances: []instance.Instance{ready("a", 1), {ID: "b", State: instance.Starting}}}}, 1, "degraded"},
		{"crash-looping", true, 1, []instance.Set{{App: "hello", Release: 1, Size: 2,
			Instances: []instance.Instance{ready("a", 1), {ID: "b", State: instance.CrashLoop}}}}, 1, "crash-looping"},
		{"ready counts the target only", true, 1, []instance.Set{
			{App: "hello", Release: 0, Size: 1, Instances: []instance.Instance{ready("old", 0)}},
			{App: "hello", Release: 1, Size: 1, Instances: []instance.Instance{{ID: "b", State: instance.Starting}}},
		}, 0, "degraded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			ctx := context.Background()
			h.deploy("name: hello\ncommand: ./run.sh\nhosts: [www.example.com]\n", smallArtifact(t))
			if tc.finish {
				h.finish("hello", 1, store.StatusComplete)
			}
			if err := h.store.Scale(ctx, "hello", tc.replicas); err != nil {
				t.Fatal(err)
			}
			h.observer.sets["hello"] = tc.sets

			st, err := h.client.App(ctx, "hello")
			if err != nil {
				t.Fatal(err)
			}
			if st.Status != tc.want || st.Ready != tc.wantReady {
				t.Errorf("status = %q with %d ready, want %q with %d", st.Status, st.Ready, tc.want, tc.wantReady)
			}
			if st.URL != "http://hello.apps.test:8080" {
				t.Errorf("url = %q", st.URL)
			}
			if !slices.Equal(st.Hosts, []string{"hello.apps.test", "www.example.com"}) {
				t.Errorf("hosts = %v", st.Hosts)
			}
			if len(st.Sets) != len(tc.sets) || st.Sets == nil {
				t.Errorf("sets = %+v, want %d (never null)", st.Sets, len(tc.sets))
			}
			if len(st.Events) == 0 || st.Events[0].Kind != "release.created" {
				t.Errorf("events = %+v, want the release's creation first", st.Events)
			}

			apps, err := h.client.Apps(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(apps) != 1 || apps[0].Status != tc.want {
				t.Errorf("apps = %+v, want hello %q", apps, tc.want)
			}
		})
	}

	t.Run("recent events only", func(t *testing.T) {
		h := newHarness(t)
		ctx := context.Background()
		h.deploy("name: hello\ncommand: ./run.sh\n", smallArtifact(t))
		for i := range 15 {
			if _, err := h.store.AddEvent(ctx, store.Event{App: "hello", Kind: "test", Message: strings.Repeat("x", i+1)}); err != nil {
				t.Fatal(err)
			}
		}
		st, err := h.client.App(ctx, "hello")
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Events) != 10 || st.Events[9].Message != strings.Repeat("x", 15) {
			t.Errorf("events = %d ending %+v, want the 10 newest", len(st.Events), st.Events[len(st.Events)-1])
		}
	})

	t.Run("unknown app", func(t *testing.T) {
		h := newHarness(t)
		_, err := h.client.App(context.Background(), "nope")
		wantAPIError(t, err, api.CodeNotFound)
	})
}
