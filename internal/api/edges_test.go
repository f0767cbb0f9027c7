package api_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/edgefeed"
	"github.com/skiff-sh/skiff/internal/store"
)

// TestEdgeFeedInput checks that the edge endpoints refuse bad names and
// bodies precisely, record a good report, and answer 404 on a server
// that feeds no edges.
func TestEdgeFeedInput(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "skiff.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	hub := edgefeed.NewHub(nil, nil)
	feeding := httptest.NewServer(api.New(api.Config{Store: st, Observer: &fakeObserver{}, Logs: &fakeLogs{}, Edges: hub}).LocalHandler())
	defer feeding.Close()
	plain := httptest.NewServer(api.New(api.Config{Store: st, Observer: &fakeObserver{}, Logs: &fakeLogs{}}).LocalHandler())
	defer plain.Close()
	post := func(url, body string) *http.Response {
		res, err := http.Post(url, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	for _, tc := range []struct{ name, path, body, words string }{
		{"name missing", "/v1/edge/ack", `{}`, `edge name "": give ?name= a DNS label`},
		{"name not a label", "/v1/edge/ack?name=Edge_1", `{}`, `edge name "Edge_1"`},
		{"unknown field", "/v1/edge/ack?name=edge-1", `{"gen": 3}`, `unknown field "gen"`},
		{"routes without a name", "/v1/edge/routes", ``, `give ?name= a DNS label`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var res *http.Response
			if strings.HasSuffix(tc.path, "routes") {
				res, err = http.Get(feeding.URL + tc.path)
				if err != nil {
					t.Fatal(err)
				}
			} else {
				res = post(feeding.URL+tc.path, tc.body)
			}
			e := wantError(t, res, http.StatusBadRequest, api.CodeBadRequest)
			if !strings.Contains(e.Message, tc.words) {
				t.Errorf("message %q does not say %q", e.Message, tc.words)
			}
		})
	}
	if edges := hub.Edges(); len(edges) != 0 {
		t.Fatalf("refused reports were recorded: %+v", edges)
	}
	if res := post(feeding.URL+"/v1/edge/ack?name=edge-1", `{"generation": 9, "busy": ["b1"]}`); res.StatusCode != http.StatusNoContent {
		t.Fatalf("a good report answered %s", res.Status)
	}
	if edges := hub.Edges(); len(edges) != 1 || edges[0].Name != "edge-1" || edges[0].Generation != 9 || edges[0].Busy[0] != "b1" {
		t.Errorf("recorded %+v", edges)
	}
	wantError(t, post(plain.URL+"/v1/edge/ack?name=edge-1", `{}`), http.StatusNotFound, api.CodeNotFound)
}
