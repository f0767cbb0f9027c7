package api

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/edgefeed"
)

// EdgeFeed is the control plane's end of the route feed to edge
// processes (edgefeed.Hub).
type EdgeFeed interface {
	Follow(ctx context.Context, name string, send func(*edge.Snapshot) error) error
	Ack(name string, a edgefeed.Ack)
	Edges() []edgefeed.EdgeStatus
}

// edgeNamePattern is an edge process's name: a DNS label.
var edgeNamePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)

// edgeName reads and checks the query parameter name, of an edge this
// server can feed.
func (s *Server) edgeName(r *http.Request) (string, error) {
	if s.cfg.Edges == nil {
		return "", &Error{Code: CodeNotFound, Message: "this server feeds no edge processes"}
	}
	name := r.URL.Query().Get("name")
	if !edgeNamePattern.MatchString(name) {
		return "", badRequest(fmt.Sprintf("edge name %q: give ?name= a DNS label of 1-63 lowercase letters, digits and '-', such as the edge's host name", name))
	}
	return name, nil
}

// edgeRoutes streams route snapshots to an edge process as NDJSON: the
// current one at once, then each new one; a blank line every 15 seconds
// keeps an idle stream open.
func (s *Server) edgeRoutes(w http.ResponseWriter, r *http.Request) {
	name, err := s.edgeName(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := newNDJSON(w)
	var mu sync.Mutex // the feed and the keep-alive share the stream
	ctx, cancel := context.WithCancel(r.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.cfg.Edges.Follow(ctx, name, func(snap *edge.Snapshot) error {
			mu.Lock()
			defer mu.Unlock()
			return out.send(snap)
		})
	}()
	// The feed's goroutine has stopped writing before the handler returns.
	defer func() { cancel(); <-done }()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-done:
			return
		case <-keepalive.C:
			mu.Lock()
			_, err := w.Write([]byte("\n"))
			if err == nil {
				err = out.rc.Flush()
			}
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}
}

// edgeAck records an edge process's report.
func (s *Server) edgeAck(w http.ResponseWriter, r *http.Request) {
	name, err := s.edgeName(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var a edgefeed.Ack
	if err := decodeBody(r, &a); err != nil {
		s.fail(w, r, err)
		return
	}
	s.cfg.Edges.Ack(name, a)
	w.WriteHeader(http.StatusNoContent)
}

// listEdges reports the edge processes that follow this server.
func (s *Server) listEdges(w http.ResponseWriter, r *http.Request) {
	out := []edgefeed.EdgeStatus{}
	if s.cfg.Edges != nil {
		out = s.cfg.Edges.Edges()
	}
	writeJSON(w, http.StatusOK, out)
}
