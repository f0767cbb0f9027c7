package api

import (
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/skiff-sh/skiff/internal/spec"
)

// PromoteRequest is the body of POST /v1/apps/{app}/promote.
type PromoteRequest struct {
	// All skips every remaining step: the new release takes all traffic.
	All bool `json:"all,omitempty"`
}

// promote lets the app's rollout go past its current pause or manual
// gate (a blue-green switch, a canary step).
func (s *Server) promote(w http.ResponseWriter, r *http.Request) {
	a, ok := s.app(w, r)
	if !ok {
		return
	}
	var req PromoteRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	rel, err := s.cfg.Store.Promote(r.Context(), a.Name, req.All)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("rollout promoted", "app", a.Name, "release", rel.Number, "all", req.All)
	s.cfg.Wake(a.Name)
	writeJSON(w, http.StatusOK, releaseView(rel, false))
}

// abort ends the app's rollout in progress as failed: the stable release
// takes all traffic back and the new instances stop.
func (s *Server) abort(w http.ResponseWriter, r *http.Request) {
	a, ok := s.app(w, r)
	if !ok {
		return
	}
	if err := decodeBody(r, &struct{}{}); err != nil {
		s.fail(w, r, err)
		return
	}
	rel, err := s.cfg.Store.Abort(r.Context(), a.Name, fmt.Sprintf("aborted by skiff abort; traffic is back on release %d", a.Stable))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("rollout aborted", "app", a.Name, "release", rel.Number)
	s.cfg.Wake(a.Name)
	writeJSON(w, http.StatusOK, releaseView(rel, false))
}

// rolloutStatus reports where the app's latest rollout stands.
func (s *Server) rolloutStatus(w http.ResponseWriter, r *http.Request) {
	a, ok := s.app(w, r)
	if !ok {
		return
	}
	st, err := s.cfg.Observer.RolloutStatus(r.Context(), a.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// strategyParam reads a deploy's ?strategy= override; "" keeps the spec's.
func strategyParam(r *http.Request) (string, error) {
	v := r.URL.Query().Get("strategy")
	if v == "" || slices.Contains(spec.Strategies, v) {
		return v, nil
	}
	return "", badRequest(fmt.Sprintf("strategy %q is not a deploy strategy: use one of %s", v, strings.Join(spec.Strategies, ", ")))
}
