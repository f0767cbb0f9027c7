// Package api is skiff's HTTP/JSON API under /v1/: the only way in for the
// CLI, the web UI and automation. It validates input and writes desired
// state to the store; it never drives a runtime or the edge itself (the
// controllers do), and reads what runs only through an Observer.
package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/skiff-sh/skiff/internal/artifact"
	"github.com/skiff-sh/skiff/internal/controller"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/logs"
	"github.com/skiff-sh/skiff/internal/spec"
	"github.com/skiff-sh/skiff/internal/store"
)

// Observer reports what runs for an app: its instance sets and where its
// latest rollout stands.
type Observer interface {
	Sets(ctx context.Context, app string) ([]instance.Set, error)
	RolloutStatus(ctx context.Context, app string) (controller.RolloutStatus, error)
}

// LogReader reads an app's collected logs.
type LogReader interface {
	Read(ctx context.Context, app string, q logs.Query, fn func(logs.Line) error) error
}

// Config wires the API to the rest of skiff.
type Config struct {
	Store     *store.Store
	Artifacts *artifact.Store
	Observer  Observer
	Logs      LogReader
	// Domain is the base domain; an app's default host is <name>.<Domain>.
	Domain string
	// EdgeURL is how users reach the edge, e.g. "http://%s:8080"; %s is
	// replaced by the host.
	EdgeURL string
	// MaxUpload is the largest artifact accepted, compressed, in bytes.
	MaxUpload int64
	// TokenHash is the hex SHA-256 of the admin token.
	TokenHash string
	// EdgeTokenHash is the hex SHA-256 of the edge token, which reaches
	// only the edge feed (/v1/edge/...): what an edge process needs, and
	// nothing that reads or changes apps. "" accepts no edge token.
	EdgeTokenHash string
	Logger        *slog.Logger
	// Wake is called after a change of desired state, with the app's name.
	Wake func(app string)
	// Edges feeds route snapshots to edge processes; nil serves none.
	Edges EdgeFeed
	// Admit refuses a spec the server's runtime cannot run: it returns
	// the path of the field at fault ("" for the document) and what to
	// do, or an empty message to accept. Nil accepts every valid spec.
	Admit func(sp *spec.Spec) (path, message string)
	// Metrics serves GET /metrics (Prometheus text format), behind the
	// same authentication as the rest of the API. Nil: no such endpoint.
	Metrics http.Handler
}

// Server serves the API.
type Server struct {
	cfg Config
	log *slog.Logger
	mux *http.ServeMux
}

// New builds the API server.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Wake == nil {
		cfg.Wake = func(string) {}
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux()}
	s.routes()
	return s
}

func (s *Server) routes() {
	s.mux.HandleFunc("GET /v1/health", s.health)
	if s.cfg.Metrics != nil {
		s.mux.Handle("GET /metrics", s.cfg.Metrics)
	}
	s.mux.HandleFunc("GET /v1/apps", s.listApps)
	s.mux.HandleFunc("GET /v1/apps/{app}", s.getApp)
	s.mux.HandleFunc("DELETE /v1/apps/{app}", s.destroyApp)
	s.mux.HandleFunc("POST /v1/releases", s.deploy)
	s.mux.HandleFunc("GET /v1/apps/{app}/releases", s.listReleases)
	s.mux.HandleFunc("GET /v1/apps/{app}/releases/{n}", s.getRelease)
	s.mux.HandleFunc("POST /v1/apps/{app}/rollback", s.rollback)
	s.mux.HandleFunc("POST /v1/apps/{app}/scale", s.scale)
	s.mux.HandleFunc("POST /v1/apps/{app}/promote", s.promote)
	s.mux.HandleFunc("POST /v1/apps/{app}/abort", s.abort)
	s.mux.HandleFunc("GET /v1/apps/{app}/rollout", s.rolloutStatus)
	s.mux.HandleFunc("GET /v1/edge/routes", s.edgeRoutes)
	s.mux.HandleFunc("POST /v1/edge/ack", s.edgeAck)
	s.mux.HandleFunc("GET /v1/edges", s.listEdges)
	s.mux.HandleFunc("GET /v1/apps/{app}/logs", s.appLogs)
	s.mux.HandleFunc("GET /v1/events", s.events)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, &Error{Code: CodeNotFound,
			Message: "no API endpoint " + r.Method + " " + r.URL.Path + "; see docs/api.md"})
	})
}

// Handler returns the API for a listener that needs the bearer token.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v1/health" {
			s.mux.ServeHTTP(w, r)
			return
		}
		switch s.tokenOf(r) {
		case adminToken:
		case edgeToken:
			if !strings.HasPrefix(r.URL.Path, edgeFeedPrefix) {
				writeError(w, http.StatusForbidden, &Error{Code: CodeForbidden,
					Message: "the edge token reaches only " + edgeFeedPrefix + "...: use the admin token (<data-dir>/admin.token) for " + r.URL.Path})
				return
			}
		default:
			w.Header().Set("WWW-Authenticate", `Bearer realm="skiff"`)
			writeError(w, http.StatusUnauthorized, &Error{Code: CodeUnauthorized,
				Message: "missing or wrong API token: set SKIFF_TOKEN to the contents of <data-dir>/admin.token"})
			return
		}
		s.mux.ServeHTTP(w, r)
	})
}

// LocalHandler returns the API for the unix socket, whose file mode (0600)
// already limits who may connect.
func (s *Server) LocalHandler() http.Handler { return s.mux }

// edgeFeedPrefix is what the edge token reaches: the route stream and
// the acks of edge processes.
const edgeFeedPrefix = "/v1/edge/"

// Which token a request carries.
const (
	noToken = iota
	adminToken
	edgeToken
)

func (s *Server) tokenOf(r *http.Request) int {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || token == "" {
		return noToken
	}
	hash := []byte(HashToken(token))
	// An empty hash is no token: it must not match anything.
	if s.cfg.TokenHash != "" && subtle.ConstantTimeCompare(hash, []byte(s.cfg.TokenHash)) == 1 {
		return adminToken
	}
	if s.cfg.EdgeTokenHash != "" && subtle.ConstantTimeCompare(hash, []byte(s.cfg.EdgeTokenHash)) == 1 {
		return edgeToken
	}
	return noToken
}

// HashToken is how tokens are kept: hex SHA-256. Tokens are long random
// strings, so a fast hash is enough.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, e *Error) {
	writeJSON(w, status, e)
}

// fail maps an error to its answer. Only here do errors become status codes.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var apiErr *Error
	var hostErr *store.HostInUseError
	var portErr *store.PortInUseError
	switch {
	case errors.As(err, &apiErr):
		writeError(w, statusOf(apiErr.Code), apiErr)
	case errors.As(err, &hostErr):
		writeError(w, http.StatusConflict, &Error{Code: CodeHostInUse, Message: hostErr.Error() + ": choose another host or remove it from that app"})
	case errors.As(err, &portErr):
		writeError(w, http.StatusConflict, &Error{Code: CodePortInUse, Message: portErr.Error() + ": choose another port or remove it from that app"})
	case errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusNotFound, &Error{Code: CodeNotFound, Message: err.Error()})
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, &Error{Code: CodeConflict, Message: err.Error()})
	case errors.Is(err, artifact.ErrTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, &Error{Code: CodeTooLarge, Message: err.Error()})
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads an answer.
	default:
		s.log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		writeError(w, http.StatusInternalServerError, &Error{Code: CodeInternal, Message: "internal error; the server log has details"})
	}
}

func statusOf(code string) int {
	switch code {
	case CodeInvalidSpec, CodeBadRequest:
		return http.StatusBadRequest
	case CodeNotFound:
		return http.StatusNotFound
	case CodeHostInUse, CodePortInUse, CodeConflict:
		return http.StatusConflict
	case CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case CodeUnauthorized:
		return http.StatusUnauthorized
	case CodeForbidden:
		return http.StatusForbidden
	}
	return http.StatusInternalServerError
}

func badRequest(msg string) *Error { return &Error{Code: CodeBadRequest, Message: msg} }
