package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/spec"
	"github.com/skiff-sh/skiff/internal/store"
)

// maxReplicas bounds `skiff scale`, as the spec bounds replicas.
const maxReplicas = 100

func (s *Server) appView(a store.App, sets []instance.Set) App {
	v := App{
		Name: a.Name, Hosts: a.Hosts, Replicas: a.Replicas, Target: a.Target, Stable: a.Stable,
		Deleting: a.Deleting, Created: a.CreatedAt, Updated: a.UpdatedAt,
		URL: fmt.Sprintf(s.cfg.EdgeURL, a.Name+"."+s.cfg.Domain),
	}
	crashing := 0
	for _, set := range sets {
		if set.Release == a.Target {
			v.Ready += set.Ready()
		}
		for _, in := range set.Instances {
			if in.State == instance.CrashLoop {
				crashing++
			}
		}
	}
	switch {
	case a.Deleting:
		v.Status = "destroying"
	case a.Target == 0:
		v.Status = "no release"
	case a.Target != a.Stable:
		v.Status = fmt.Sprintf("deploying release %d", a.Target)
	case crashing > 0:
		v.Status = "crash-looping"
	case v.Ready < a.Replicas:
		v.Status = "degraded"
	default:
		v.Status = "running"
	}
	return v
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	apps, err := s.cfg.Store.Apps(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]App, 0, len(apps))
	for _, a := range apps {
		sets, err := s.cfg.Observer.Sets(r.Context(), a.Name)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out = append(out, s.appView(a, sets))
	}
	writeJSON(w, http.StatusOK, out)
}

// app loads the app named in the path, answering 404 itself.
func (s *Server) app(w http.ResponseWriter, r *http.Request) (store.App, bool) {
	name := r.PathValue("app")
	a, err := s.cfg.Store.App(r.Context(), name)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, &Error{Code: CodeNotFound,
			Message: fmt.Sprintf("no app %q; `skiff apps` lists them", name)})
		return a, false
	}
	if err != nil {
		s.fail(w, r, err)
		return a, false
	}
	return a, true
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) {
	a, ok := s.app(w, r)
	if !ok {
		return
	}
	sets, err := s.cfg.Observer.Sets(r.Context(), a.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	evs, err := s.cfg.Store.Events(r.Context(), store.EventQuery{App: a.Name, Limit: 0})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if len(evs) > 10 {
		evs = evs[len(evs)-10:]
	}
	out := AppStatus{App: s.appView(a, sets), Sets: sets, Events: make([]Event, 0, len(evs))}
	if out.Sets == nil {
		out.Sets = []instance.Set{}
	}
	for _, e := range evs {
		out.Events = append(out.Events, eventView(e))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) destroyApp(w http.ResponseWriter, r *http.Request) {
	a, ok := s.app(w, r)
	if !ok {
		return
	}
	if err := s.cfg.Store.MarkDeleting(r.Context(), a.Name); err != nil {
		s.fail(w, r, err)
		return
	}
	s.cfg.Wake(a.Name)
	writeJSON(w, http.StatusAccepted, map[string]string{"app": a.Name, "status": "destroying"})
}

func (s *Server) scale(w http.ResponseWriter, r *http.Request) {
	a, ok := s.app(w, r)
	if !ok {
		return
	}
	var req ScaleRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.Replicas == nil {
		s.fail(w, r, badRequest(`body needs "replicas", e.g. {"replicas": 3}`))
		return
	}
	if n := *req.Replicas; n < 0 || n > maxReplicas {
		s.fail(w, r, badRequest(fmt.Sprintf("replicas must be between 0 and %d, got %d", maxReplicas, n)))
		return
	}
	if a.Deleting {
		s.fail(w, r, &Error{Code: CodeConflict, Message: fmt.Sprintf("app %q is being destroyed", a.Name)})
		return
	}
	if err := s.cfg.Store.Scale(r.Context(), a.Name, *req.Replicas); err != nil {
		s.fail(w, r, err)
		return
	}
	s.cfg.Wake(a.Name)
	a.Replicas = *req.Replicas
	writeJSON(w, http.StatusOK, s.appView(a, nil))
}

func (s *Server) listReleases(w http.ResponseWriter, r *http.Request) {
	a, ok := s.app(w, r)
	if !ok {
		return
	}
	rels, err := s.cfg.Store.Releases(r.Context(), a.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]Release, 0, len(rels))
	for _, rel := range rels {
		out = append(out, releaseView(rel, false))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getRelease(w http.ResponseWriter, r *http.Request) {
	a, ok := s.app(w, r)
	if !ok {
		return
	}
	n, err := strconv.Atoi(r.PathValue("n"))
	if err != nil || n < 1 {
		s.fail(w, r, badRequest(fmt.Sprintf("release number must be a positive integer, got %q", r.PathValue("n"))))
		return
	}
	rel, err := s.cfg.Store.Release(r.Context(), a.Name, n)
	if errors.Is(err, store.ErrNotFound) {
		err = &Error{Code: CodeNotFound, Message: fmt.Sprintf("app %q has no release %d; `skiff releases %s` lists them", a.Name, n, a.Name)}
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, releaseView(rel, true))
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	a, ok := s.app(w, r)
	if !ok {
		return
	}
	var req RollbackRequest
	if err := decodeBody(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	rels, err := s.cfg.Store.Releases(r.Context(), a.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	from, err := rollbackSource(a, rels, req.To)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sp, err := spec.Parse(from.SpecFile, from.Spec)
	if err != nil {
		s.fail(w, r, fmt.Errorf("parse spec of release %d: %w", from.Number, err))
		return
	}
	if err := s.admit(sp); err != nil {
		s.fail(w, r, specError(err))
		return
	}
	rel, err := s.cfg.Store.CreateRelease(r.Context(), store.NewRelease{
		App: a.Name, SpecFile: from.SpecFile, Spec: from.Spec, Artifact: from.Artifact,
		Hosts: s.hostsOf(sp), TCP: tcpClaims(sp), RollbackOf: from.Number,
		// Back to known-good bits at once: a rolling update keeps the
		// readiness gate and the drain, without a canary's pauses.
		Strategy: spec.Rolling,
	})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.cfg.Wake(a.Name)
	writeJSON(w, http.StatusCreated, releaseView(rel, false))
}

// rollbackSource picks the release to copy: the one asked for; during a
// rollout, the stable release; otherwise the newest completed release
// before the one serving now.
func rollbackSource(a store.App, rels []store.Release, to int) (store.Release, error) {
	if to != 0 {
		for _, rel := range rels {
			if rel.Number == to {
				return rel, nil
			}
		}
		return store.Release{}, &Error{Code: CodeNotFound, Message: fmt.Sprintf("app %q has no release %d; `skiff releases %s` lists them", a.Name, to, a.Name)}
	}
	for _, rel := range rels { // newest first
		if a.Target != a.Stable && rel.Number == a.Stable {
			return rel, nil
		}
		if rel.Status == "complete" && rel.Number < a.Stable {
			return rel, nil
		}
	}
	return store.Release{}, &Error{Code: CodeConflict,
		Message: fmt.Sprintf("app %q has no earlier good release to roll back to; name one with --to N", a.Name)}
}

func releaseView(rel store.Release, withSpec bool) Release {
	v := Release{
		App: rel.App, Number: rel.Number, Status: rel.Status, Message: rel.Message,
		Artifact: rel.Artifact, Image: rel.Image, RollbackOf: rel.RollbackOf, Created: rel.CreatedAt, Finished: rel.FinishedAt,
		Strategy: rel.Strategy,
	}
	if v.Strategy == "" {
		if sp, err := spec.Parse(rel.SpecFile, rel.Spec); err == nil {
			v.Strategy = sp.Rollout("").Strategy
		}
	}
	if withSpec {
		v.Spec = string(rel.Spec)
	}
	return v
}

func eventView(e store.Event) Event {
	return Event{ID: e.ID, Time: e.Time, App: e.App, Release: e.Release, Kind: e.Kind, Message: e.Message, Data: e.Data}
}

// decodeBody reads a small JSON body strictly; an empty body is an empty
// request.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return badRequest("invalid JSON body: " + err.Error())
	}
	return nil
}
