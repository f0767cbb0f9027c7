package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/edgefeed"
)

const edgeTestToken = "edge-token-0123456789abcdef"

// The edge token reaches the edge feed and nothing else: every other
// endpoint answers 403 and changes nothing; the admin token still
// reaches everything.
func TestEdgeTokenReachesOnlyTheFeed(t *testing.T) {
	hub := edgefeed.NewHub(nil, nil)
	h := newHarness(t, func(c *api.Config) {
		c.Edges = hub
		c.EdgeTokenHash = api.HashToken(edgeTestToken)
	})
	h.deploy("name: hello\ncommand: ./run.sh\n", smallArtifact(t))
	hub.Apply(&edge.Snapshot{Generation: 42})

	edgeClient, err := client.New(h.ts.URL, edgeTestToken)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := edgeClient.EdgeAck(ctx, "edge-a", edgefeed.Ack{Generation: 41}); err != nil {
		t.Fatalf("ack with the edge token: %v", err)
	}
	var got uint64
	errStop := errorString("got one")
	err = edgeClient.EdgeRoutes(ctx, "edge-a", func(s *edge.Snapshot) error { got = s.Generation; return errStop })
	if got != 42 {
		t.Fatalf("route stream with the edge token: generation %d, err %v; want 42", got, err)
	}

	for _, ep := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/apps", ""},
		{http.MethodGet, "/v1/apps/hello", ""},
		{http.MethodPost, "/v1/apps/hello/scale", `{"replicas": 0}`},
		{http.MethodDelete, "/v1/apps/hello", ""},
		{http.MethodGet, "/v1/edges", ""},
		{http.MethodGet, "/v1/events", ""},
		{http.MethodGet, "/metrics", ""},
	} {
		t.Run(ep.method+" "+ep.path, func(t *testing.T) {
			req, err := http.NewRequest(ep.method, h.ts.URL+ep.path, strings.NewReader(ep.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Authorization", "Bearer "+edgeTestToken)
			resp, err := h.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			e := wantError(t, resp, http.StatusForbidden, api.CodeForbidden)
			if !strings.Contains(e.Message, "edge token reaches only /v1/edge/") || strings.Contains(e.Message, edgeTestToken) {
				t.Errorf("message %q: want it to say what the edge token reaches, without the token", e.Message)
			}
		})
	}
	a, err := h.store.App(context.Background(), "hello")
	if err != nil {
		t.Fatal(err)
	}
	if a.Deleting || a.Replicas != 1 {
		t.Errorf("app after refused requests = %+v, want unchanged (replicas 1, not deleting)", a)
	}
	if apps, err := h.client.Apps(ctx); err != nil || len(apps) != 1 {
		t.Errorf("admin token: apps %+v, %v; want hello", apps, err)
	}
	if edges, err := h.client.Edges(ctx); err != nil || len(edges) != 1 || edges[0].Name != "edge-a" {
		t.Errorf("admin token: edges %+v, %v; want edge-a", edges, err)
	}

	// Without an edge token configured, an edge token is just wrong.
	plain := newHarness(t)
	c, err := client.New(plain.ts.URL, edgeTestToken)
	if err != nil {
		t.Fatal(err)
	}
	wantAPIError(t, c.EdgeAck(ctx, "edge-a", edgefeed.Ack{}), api.CodeUnauthorized)
}

type errorString string

func (e errorString) Error() string { return string(e) }
