package api

import (
	"archive/tar"
	"compress/flate"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"

	"github.com/skiff-sh/skiff/internal/artifact"
	"github.com/skiff-sh/skiff/internal/spec"
	"github.com/skiff-sh/skiff/internal/store"
)

// maxSpecBytes bounds the skiff.yaml part of a deploy.
const maxSpecBytes = 1 << 20

// deploy creates a release from a multipart upload: the part "spec" (the
// skiff.yaml, its file name used in error positions) and then the part
// "artifact" (a gzip'd tar of the app's directory). Nothing is stored until
// the spec is valid, and a release exists only once its artifact is durable.
func (s *Server) deploy(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, s.cfg.MaxUpload+maxSpecBytes+64<<10)
	strategy, err := strategyParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	mr, err := r.MultipartReader()
	if err != nil {
		s.fail(w, r, badRequest("a deploy is a multipart/form-data upload with parts \"spec\" and \"artifact\": "+err.Error()))
		return
	}
	specFile, specData, err := readSpecPart(mr)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sp, err := spec.Parse(specFile, specData)
	if err == nil {
		err = s.admit(sp)
	}
	if err != nil {
		s.fail(w, r, specError(err))
		return
	}
	// Refuse a deploy to an app being destroyed before its artifact is
	// stored: the destroy would never remove an archive no release names.
	// The store checks again when it creates the release.
	if a, err := s.cfg.Store.App(r.Context(), sp.Name); err == nil && a.Deleting {
		s.fail(w, r, &Error{Code: CodeConflict, Message: fmt.Sprintf("app %q is being destroyed; try again when `skiff apps` no longer lists it", sp.Name)})
		return
	} else if err != nil && !errors.Is(err, store.ErrNotFound) {
		s.fail(w, r, err)
		return
	}
	prev, err := s.latestSpec(r, sp.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hosts := s.hostsOf(sp)
	if err := s.checkHosts(r, sp, specFile, hosts); err != nil {
		s.fail(w, r, err)
		return
	}
	ports := tcpClaims(sp)
	if err := s.checkPorts(r, sp, specFile, ports); err != nil {
		s.fail(w, r, err)
		return
	}

	part, err := mr.NextPart()
	if err != nil || part.FormName() != "artifact" {
		s.fail(w, r, badRequest(`a deploy needs the part "artifact" (a gzip'd tar of the app's directory) after "spec"`))
		return
	}
	// The same directory packs to the same digest: keep an earlier
	// release's archive if this deploy fails.
	digest, err := s.cfg.Artifacts.Put(part, s.cfg.MaxUpload)
	if err != nil {
		s.fail(w, r, s.artifactError(err))
		return
	}

	nr := store.NewRelease{App: sp.Name, SpecFile: specFile, Spec: specData, Artifact: digest, Hosts: hosts, TCP: ports, Strategy: strategy}
	if sp.Replicas != nil && (prev == nil || prev.Replicas == nil || *prev.Replicas != *sp.Replicas) {
		nr.Replicas = sp.Replicas
	}
	rel, err := s.cfg.Store.CreateRelease(r.Context(), nr)
	if err != nil {
		s.fail(w, r, portError(s.hostError(err, sp, specFile), sp, specFile))
		return
	}
	s.log.Info("release created", "app", rel.App, "release", rel.Number, "artifact", digest)
	s.cfg.Wake(rel.App)
	writeJSON(w, http.StatusCreated, releaseView(rel, false))
}

// artifactError answers a failed Put. The archive comes from the client,
// so one that is malformed, cut short or unsafe is a bad request, not an
// internal error; only the server's own failures (a full disk) remain
// internal.
func (s *Server) artifactError(err error) error {
	var maxErr *http.MaxBytesError
	var corrupt flate.CorruptInputError
	switch {
	case errors.As(err, &maxErr):
		return &Error{Code: CodeTooLarge, Message: fmt.Sprintf("the upload exceeds the server's limit of %d bytes; exclude files with .skiffignore", s.cfg.MaxUpload)}
	case errors.Is(err, artifact.ErrUnsafePath),
		errors.Is(err, gzip.ErrHeader), errors.Is(err, gzip.ErrChecksum), errors.As(err, &corrupt),
		errors.Is(err, tar.ErrHeader), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("the artifact is not a usable app archive (" + err.Error() + "): upload a gzip'd tar of the app's directory, as `skiff deploy` makes")
	}
	return fmt.Errorf("store artifact: %w", err)
}

func readSpecPart(mr *multipart.Reader) (string, []byte, error) {
	part, err := mr.NextPart()
	if err != nil || part.FormName() != "spec" {
		return "", nil, badRequest(`a deploy's first part must be "spec" (the skiff.yaml)`)
	}
	data, err := io.ReadAll(io.LimitReader(part, maxSpecBytes+1))
	if err != nil {
		return "", nil, badRequest("read spec: " + err.Error())
	}
	if len(data) > maxSpecBytes {
		return "", nil, &Error{Code: CodeTooLarge, Message: fmt.Sprintf("the spec is larger than %d bytes", maxSpecBytes)}
	}
	// The file name as the user typed it, path included (FileName would
	// keep only the base), so errors point at their file. It is used only
	// in messages.
	name := "skiff.yaml"
	if _, params, err := mime.ParseMediaType(part.Header.Get("Content-Disposition")); err == nil && params["filename"] != "" {
		name = params["filename"]
	}
	return name, data, nil
}

// latestSpec parses the spec of the app's newest release, nil for a new app.
func (s *Server) latestSpec(r *http.Request, app string) (*spec.Spec, error) {
	rels, err := s.cfg.Store.Releases(r.Context(), app)
	if errors.Is(err, store.ErrNotFound) || (err == nil && len(rels) == 0) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	sp, err := spec.Parse(rels[0].SpecFile, rels[0].Spec)
	if err != nil {
		return nil, fmt.Errorf("parse spec of release %d: %w", rels[0].Number, err)
	}
	return sp, nil
}

// hostsOf is every host of an app: its default host first, then the
// spec's own.
func (s *Server) hostsOf(sp *spec.Spec) []string {
	hosts := []string{sp.Name + "." + s.cfg.Domain}
	for _, h := range sp.Hosts {
		if !slices.Contains(hosts, h) {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// checkHosts finds a host owned by another app before anything is stored,
// so the error carries its position in the spec.
func (s *Server) checkHosts(r *http.Request, sp *spec.Spec, file string, hosts []string) error {
	apps, err := s.cfg.Store.Apps(r.Context())
	if err != nil {
		return err
	}
	for _, a := range apps {
		if a.Name == sp.Name {
			continue
		}
		for _, h := range hosts {
			if slices.Contains(a.Hosts, h) {
				return s.hostError(&store.HostInUseError{Host: h, App: a.Name}, sp, file)
			}
		}
	}
	return nil
}

// hostError gives a host conflict the position of the host in the spec.
func (s *Server) hostError(err error, sp *spec.Spec, file string) error {
	var hostErr *store.HostInUseError
	if !errors.As(err, &hostErr) {
		return err
	}
	path := "name"
	for i, h := range sp.Hosts {
		if h == hostErr.Host {
			path = fmt.Sprintf("hosts[%d]", i)
		}
	}
	line, col := sp.Pos(path)
	msg := fmt.Sprintf("host %q is already used by app %q: choose another host or remove it from that app", hostErr.Host, hostErr.App)
	if path == "name" {
		msg = fmt.Sprintf("the default host %q of this app is already used by app %q: rename the app or remove the host from that app", hostErr.Host, hostErr.App)
	}
	d := ErrorDetail{File: file, Line: line, Column: col, Path: path, Message: msg}
	return &Error{Code: CodeHostInUse, Message: formatDetail(d), Details: []ErrorDetail{d}}
}

// admit asks the runtime's Admit whether it can run sp, as a positioned
// spec error when it cannot.
func (s *Server) admit(sp *spec.Spec) error {
	if s.cfg.Admit == nil {
		return nil
	}
	path, msg := s.cfg.Admit(sp)
	if msg == "" {
		return nil
	}
	return &spec.Errors{List: []*spec.Error{sp.ErrorAt(path, msg)}}
}

// specError turns spec problems into an answer listing each with its place.
func specError(err error) error {
	var list *spec.Errors
	if !errors.As(err, &list) {
		return badRequest(err.Error())
	}
	out := &Error{Code: CodeInvalidSpec}
	msgs := make([]string, 0, len(list.List))
	for _, e := range list.List {
		d := ErrorDetail{File: e.File, Line: e.Line, Column: e.Column, Path: e.Path, Message: e.Message}
		out.Details = append(out.Details, d)
		msgs = append(msgs, e.Error())
	}
	out.Message = strings.Join(msgs, "\n")
	return out
}

func formatDetail(d ErrorDetail) string {
	var b strings.Builder
	if d.File != "" {
		b.WriteString(d.File)
		if d.Line > 0 {
			fmt.Fprintf(&b, ":%d:%d", d.Line, d.Column)
		}
		b.WriteString(": ")
	}
	if d.Path != "" {
		b.WriteString(d.Path + ": ")
	}
	b.WriteString(d.Message)
	return b.String()
}
