package api_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/store"
)

func TestPromoteAndAbort(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	first := h.deploy("name: hello\ncommand: ./run.sh\n", smallArtifact(t))
	h.finish("hello", first.Number, store.StatusComplete)

	// Nothing in progress: both refused, nothing changes.
	for _, path := range []string{"/v1/apps/hello/promote", "/v1/apps/hello/abort"} {
		e := wantError(t, h.postJSON(path, `{}`), http.StatusConflict, api.CodeConflict)
		if !strings.Contains(e.Message, "no rollout in progress") {
			t.Errorf("%s: %q", path, e.Message)
		}
	}
	wantError(t, h.postJSON("/v1/apps/hello/promote", `{"everything": true}`), http.StatusBadRequest, api.CodeBadRequest)
	wantError(t, h.postJSON("/v1/apps/nope/abort", `{}`), http.StatusNotFound, api.CodeNotFound)

	rel, err := h.client.DeployWith(ctx, "skiff.yaml", []byte("name: hello\ncommand: ./run.sh\n"), bytes.NewReader(smallArtifact(t)), "canary")
	if err != nil {
		t.Fatal(err)
	}
	if rel.Strategy != "canary" {
		t.Errorf("release strategy = %q, want the override canary", rel.Strategy)
	}
	wakes := len(h.wokenApps())
	p, err := h.client.Promote(ctx, "hello", true)
	if err != nil || p.Number != rel.Number {
		t.Fatalf("promote = %+v, %v", p, err)
	}
	if stored, _ := h.store.Release(ctx, "hello", rel.Number); stored.Promoted != store.PromoteAll {
		t.Errorf("promote --all stored promoted = %d", stored.Promoted)
	}
	a, err := h.client.Abort(ctx, "hello")
	if err != nil || a.Status != store.StatusFailed || !strings.Contains(a.Message, "aborted by skiff abort; traffic is back on release 1") {
		t.Fatalf("abort = %+v, %v", a, err)
	}
	if len(h.wokenApps()) < wakes+2 {
		t.Error("promote and abort did not wake the controller")
	}
	if app, _ := h.store.App(ctx, "hello"); app.Target != first.Number {
		t.Errorf("after abort the target is %d, want %d", app.Target, first.Number)
	}
}

func TestDeployStrategyParam(t *testing.T) {
	h := newHarness(t)
	_, err := h.client.DeployWith(context.Background(), "skiff.yaml", []byte("name: hello\ncommand: ./run.sh\n"), bytes.NewReader(smallArtifact(t)), "yolo")
	e := wantAPIError(t, err, api.CodeBadRequest)
	if !strings.Contains(e.Message, `strategy "yolo" is not a deploy strategy: use one of rolling, blue-green, canary`) {
		t.Fatalf("deploy with a bad strategy: %s", e.Message)
	}
	if _, err := h.store.App(context.Background(), "hello"); err == nil {
		t.Error("a refused deploy created the app")
	}
}
