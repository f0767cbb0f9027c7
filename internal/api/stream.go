package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/skiff-sh/skiff/internal/logs"
	"github.com/skiff-sh/skiff/internal/store"
)

// ndjson writes one JSON value a line and flushes each at once, so a
// following client sees progress as it happens.
type ndjson struct {
	w   http.ResponseWriter
	enc *json.Encoder
	rc  *http.ResponseController
}

func newNDJSON(w http.ResponseWriter) *ndjson {
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	// Send the headers now: a follower learns at once that its stream is
	// open, not only when the first line or keep-alive comes.
	rc := http.NewResponseController(w)
	rc.Flush()
	return &ndjson{w: w, enc: json.NewEncoder(w), rc: rc}
}

func (n *ndjson) send(v any) error {
	if err := n.enc.Encode(v); err != nil {
		return err
	}
	return n.rc.Flush()
}

// events answers GET /v1/events?app=&release=&after=&limit=&follow=1.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	eq := store.EventQuery{App: q.Get("app")}
	var err error
	if eq.Release, err = intParam(q.Get("release"), "release"); err != nil {
		s.fail(w, r, err)
		return
	}
	after, err := intParam(q.Get("after"), "after")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	eq.After = int64(after)
	if eq.Limit, err = intParam(q.Get("limit"), "limit"); err != nil {
		s.fail(w, r, err)
		return
	}
	follow := q.Get("follow") == "1" || q.Get("follow") == "true"
	if !follow {
		evs, err := s.cfg.Store.Events(r.Context(), eq)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out := make([]Event, 0, len(evs))
		for _, e := range evs {
			out = append(out, eventView(e))
		}
		writeJSON(w, http.StatusOK, out)
		return
	}

	wake, cancel := s.cfg.Store.Subscribe()
	defer cancel()
	out := newNDJSON(w)
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		evs, err := s.cfg.Store.Events(r.Context(), eq)
		if err != nil {
			return
		}
		for _, e := range evs {
			if err := out.send(eventView(e)); err != nil {
				return
			}
			eq.After = e.ID
		}
		select {
		case <-r.Context().Done():
			return
		case <-wake:
		case <-keepalive.C:
			// A blank line keeps proxies from closing an idle stream.
			if _, err := w.Write([]byte("\n")); err != nil {
				return
			}
			out.rc.Flush()
		}
	}
}

// appLogs answers GET /v1/apps/{app}/logs?since=10m&tail=100&follow=1&release=N.
func (s *Server) appLogs(w http.ResponseWriter, r *http.Request) {
	a, ok := s.app(w, r)
	if !ok {
		return
	}
	q := r.URL.Query()
	var lq logs.Query
	var err error
	if lq.Since, err = sinceParam(q.Get("since"), time.Now()); err != nil {
		s.fail(w, r, err)
		return
	}
	if lq.Tail, err = intParam(q.Get("tail"), "tail"); err != nil {
		s.fail(w, r, err)
		return
	}
	if lq.Release, err = intParam(q.Get("release"), "release"); err != nil {
		s.fail(w, r, err)
		return
	}
	lq.Instance = q.Get("instance")
	lq.Follow = q.Get("follow") == "1" || q.Get("follow") == "true"
	out := newNDJSON(w)
	s.cfg.Logs.Read(r.Context(), a.Name, lq, func(l logs.Line) error {
		return out.send(LogLine{Time: l.Time, Release: l.Release, Instance: l.Instance, Text: l.Text})
	})
}

func intParam(v, name string) (int, error) {
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, badRequest(fmt.Sprintf("query parameter %s must be a non-negative integer, got %q", name, v))
	}
	return n, nil
}

// sinceParam accepts a duration back from now ("10m") or an RFC 3339 time.
func sinceParam(v string, now time.Time) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	return time.Time{}, badRequest(fmt.Sprintf("since must be a duration such as 10m or a time such as 2026-01-02T15:04:05Z, got %q", v))
}
