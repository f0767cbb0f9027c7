package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/logs"
	"github.com/skiff-sh/skiff/internal/store"
)

// addEvents adds n events for app with messages m1, m2, ... and returns
// their ids.
func addEvents(t *testing.T, st *store.Store, app string, n int) []int64 {
	t.Helper()
	var ids []int64
	for i := range n {
		e, err := st.AddEvent(context.Background(), store.Event{App: app, Kind: "test.event", Message: "m" + string(rune('1'+i)),
			Data: map[string]any{"i": i}})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, e.ID)
	}
	return ids
}

func TestEventsList(t *testing.T) {
	h := newHarness(t)
	ids := addEvents(t, h.store, "hello", 5)
	other := addEvents(t, h.store, "other", 1)

	tests := []struct {
		name  string
		query string
		want  []int64
	}{
		{"all", "", append(append([]int64{}, ids...), other...)},
		{"one app", "app=hello", ids},
		{"after", "app=hello&after=" + itoa(ids[1]), ids[2:]},
		{"limit", "app=hello&limit=2", ids[:2]},
		{"after and limit", "after=" + itoa(ids[0]) + "&limit=3", ids[1:4]},
		{"after the last", "after=" + itoa(other[0]), nil},
		{"unknown app", "app=nope", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs := decodeJSON[[]api.Event](t, h.request(http.MethodGet, "/v1/events?"+tc.query, nil, ""), http.StatusOK)
			if evs == nil {
				t.Fatal("events answer is null, want a list")
			}
			var got []int64
			for _, e := range evs {
				got = append(got, e.ID)
			}
			if !equalIDs(got, tc.want) {
				t.Errorf("ids = %v, want %v", got, tc.want)
			}
		})
	}

	evs := decodeJSON[[]api.Event](t, h.request(http.MethodGet, "/v1/events?app=hello&limit=1", nil, ""), http.StatusOK)
	if e := evs[0]; e.App != "hello" || e.Kind != "test.event" || e.Message != "m1" || e.Time.IsZero() || e.Data["i"] != float64(0) {
		t.Errorf("event = %+v, want hello test.event m1 with its time and data", e)
	}

	for _, q := range []string{"after=-1", "after=x", "limit=-5", "limit=ten", "release=one"} {
		t.Run("refused "+q, func(t *testing.T) {
			e := wantError(t, h.request(http.MethodGet, "/v1/events?"+q, nil, ""), http.StatusBadRequest, api.CodeBadRequest)
			name, _, _ := strings.Cut(q, "=")
			if !strings.Contains(e.Message, name) {
				t.Errorf("message %q does not name the parameter %s", e.Message, name)
			}
		})
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestEventsFollow(t *testing.T) {
	h := newHarness(t)
	ids := addEvents(t, h.store, "hello", 2)
	addEvents(t, h.store, "other", 1)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan api.Event, 16)
	done := make(chan error, 1)
	go func() {
		done <- h.client.Events(ctx, client.EventQuery{App: "hello", After: ids[0], Follow: true}, func(e api.Event) error {
			got <- e
			return nil
		})
	}()

	next := func(what string) api.Event {
		t.Helper()
		select {
		case e := <-got:
			return e
		case err := <-done:
			t.Fatalf("stream ended before %s: %v", what, err)
		case <-ctx.Done():
			t.Fatalf("no %s within the deadline", what)
		}
		return api.Event{}
	}
	// The stream starts with what is there after the cursor: proof that
	// it runs before the new event is added.
	if e := next("the existing event"); e.ID != ids[1] {
		t.Fatalf("first streamed event = %+v, want id %d", e, ids[1])
	}
	added, err := h.store.AddEvent(context.Background(), store.Event{App: "other", Kind: "test.event", Message: "not for hello"})
	if err != nil {
		t.Fatal(err)
	}
	added, err = h.store.AddEvent(context.Background(), store.Event{App: "hello", Kind: "test.event", Message: "late"})
	if err != nil {
		t.Fatal(err)
	}
	if e := next("the event added while following"); e.ID != added.ID || e.Message != "late" {
		t.Fatalf("streamed event = %+v, want the late one (id %d)", e, added.ID)
	}
	select {
	case e := <-got:
		t.Errorf("unexpected event %+v", e)
	default:
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end when the client went away")
	}
}

// TestEventsFollowWire checks the stream's framing as any HTTP client
// sees it: NDJSON, one event a line, flushed as it happens.
func TestEventsFollowWire(t *testing.T) {
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.ts.URL+"/v1/events?follow=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := h.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d, Content-Type %q; want 200 application/x-ndjson", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	// The headers arrived before any event exists: the stream is open.
	ids := addEvents(t, h.store, "hello", 2)
	sc := bufio.NewScanner(resp.Body)
	for _, id := range ids {
		if !sc.Scan() {
			t.Fatalf("stream ended: %v", sc.Err())
		}
		var e api.Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if e.ID != id {
			t.Errorf("event id = %d, want %d", e.ID, id)
		}
	}
}

func TestLogs(t *testing.T) {
	h := newHarness(t)
	h.deploy("name: hello\ncommand: ./run.sh\n", smallArtifact(t))
	at := time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)
	h.logs.lines = []logs.Line{
		{Time: at, App: "hello", Release: 1, Instance: "hello-1-a", Text: "listening"},
		{Time: at.Add(time.Second), App: "hello", Release: 1, Instance: "hello-1-a", Text: "GET /"},
	}

	tests := []struct {
		name  string
		query url.Values
		check func(t *testing.T, q logs.Query, sent time.Time)
	}{
		{"defaults", nil, func(t *testing.T, q logs.Query, _ time.Time) {
			if q != (logs.Query{}) {
				t.Errorf("query = %+v, want the zero query", q)
			}
		}},
		{"since a duration", url.Values{"since": {"10m"}}, func(t *testing.T, q logs.Query, sent time.Time) {
			want := sent.Add(-10 * time.Minute)
			if d := q.Since.Sub(want); d < -5*time.Second || d > 5*time.Second {
				t.Errorf("since = %v, want about %v", q.Since, want)
			}
		}},
		{"since a time", url.Values{"since": {"2026-01-02T15:04:05Z"}}, func(t *testing.T, q logs.Query, _ time.Time) {
			if !q.Since.Equal(at) {
				t.Errorf("since = %v, want %v", q.Since, at)
			}
		}},
		{"since a time with offset", url.Values{"since": {"2026-01-02T16:04:05+01:00"}}, func(t *testing.T, q logs.Query, _ time.Time) {
			if !q.Since.Equal(at) {
				t.Errorf("since = %v, want %v", q.Since, at)
			}
		}},
		{"tail, release, instance, follow", url.Values{"tail": {"50"}, "release": {"3"}, "instance": {"hello-3-b"}, "follow": {"1"}},
			func(t *testing.T, q logs.Query, _ time.Time) {
				want := logs.Query{Tail: 50, Release: 3, Instance: "hello-3-b", Follow: true}
				if q != want {
					t.Errorf("query = %+v, want %+v", q, want)
				}
			}},
		{"follow true", url.Values{"follow": {"true"}}, func(t *testing.T, q logs.Query, _ time.Time) {
			if !q.Follow {
				t.Error("follow=true did not ask to follow")
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			apps0, _ := h.logs.calls()
			sent := time.Now()
			resp := h.request(http.MethodGet, "/v1/apps/hello/logs?"+tc.query.Encode(), nil, "")
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/x-ndjson" {
				t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
			}
			var lines []api.LogLine
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				var l api.LogLine
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					t.Fatalf("line %q: %v", sc.Text(), err)
				}
				lines = append(lines, l)
			}
			if len(lines) != 2 || lines[0].Text != "listening" || lines[1].Instance != "hello-1-a" || !lines[0].Time.Equal(at) || lines[1].Release != 1 {
				t.Errorf("lines = %+v, want the reader's two lines", lines)
			}
			apps, queries := h.logs.calls()
			if len(apps) != len(apps0)+1 || apps[len(apps)-1] != "hello" {
				t.Fatalf("reader calls = %v, want one more for hello", apps)
			}
			tc.check(t, queries[len(queries)-1], sent)
		})
	}

	t.Run("client", func(t *testing.T) {
		var got []api.LogLine
		err := h.client.Logs(context.Background(), "hello", client.LogQuery{Since: "1h", Tail: 5, Release: 1}, func(l api.LogLine) error {
			got = append(got, l)
			return nil
		})
		if err != nil || len(got) != 2 {
			t.Fatalf("logs = %+v, %v; want two lines", got, err)
		}
		_, queries := h.logs.calls()
		if q := queries[len(queries)-1]; q.Tail != 5 || q.Release != 1 || q.Since.IsZero() {
			t.Errorf("query = %+v, want tail 5, release 1 and a since", q)
		}
	})

	refused := []struct {
		name, query, param string
	}{
		{"since a word", "since=yesterday", "since"},
		{"since negative", "since=-5m", "since"},
		{"since a date only", "since=2026-01-02", "since"},
		{"tail negative", "tail=-1", "tail"},
		{"tail a word", "tail=all", "tail"},
		{"release a word", "release=latest", "release"},
	}
	for _, tc := range refused {
		t.Run("refused "+tc.name, func(t *testing.T) {
			apps0, _ := h.logs.calls()
			e := wantError(t, h.request(http.MethodGet, "/v1/apps/hello/logs?"+tc.query, nil, ""), http.StatusBadRequest, api.CodeBadRequest)
			if !strings.Contains(e.Message, tc.param) {
				t.Errorf("message %q does not name %s", e.Message, tc.param)
			}
			if apps, _ := h.logs.calls(); len(apps) != len(apps0) {
				t.Error("the log reader was called for a refused query")
			}
		})
	}
	t.Run("unknown app", func(t *testing.T) {
		wantError(t, h.request(http.MethodGet, "/v1/apps/nope/logs", nil, ""), http.StatusNotFound, api.CodeNotFound)
	})
}
