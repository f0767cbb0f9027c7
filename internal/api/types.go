package api

import (
	"time"

	"github.com/skiff-sh/skiff/internal/controller"
	"github.com/skiff-sh/skiff/internal/instance"
)

// The wire types of the /v1 API. The client package decodes the same
// structs, so the API and the CLI cannot drift apart.

// Error is the body of every error answer.
type Error struct {
	// Code is stable; scripts may branch on it.
	Code string `json:"code"`
	// Message says what was wrong and what to do, for a person.
	Message string `json:"message"`
	// Details carries positions of spec errors and similar specifics.
	Details []ErrorDetail `json:"details,omitempty"`
}

// ErrorDetail is one problem, with its place in a file where it has one.
type ErrorDetail struct {
	File    string `json:"file,omitempty"`
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
}

func (e *Error) Error() string { return e.Message }

// Stable error codes.
const (
	CodeInvalidSpec  = "invalid_spec"
	CodeBadRequest   = "bad_request"
	CodeNotFound     = "not_found"
	CodeHostInUse    = "host_in_use"
	CodePortInUse    = "port_in_use"
	CodeConflict     = "conflict"
	CodeTooLarge     = "too_large"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeInternal     = "internal"
)

// App is an app as listed and shown.
type App struct {
	Name     string    `json:"name"`
	URL      string    `json:"url"`
	Hosts    []string  `json:"hosts"`
	Replicas int       `json:"replicas"`
	Ready    int       `json:"ready"`
	Target   int       `json:"target_release"`
	Stable   int       `json:"stable_release"`
	Status   string    `json:"status"`
	Deleting bool      `json:"deleting,omitempty"`
	Created  time.Time `json:"created_at"`
	Updated  time.Time `json:"updated_at"`
}

// AppStatus is `skiff status`: the app, its instance sets and its recent
// events.
type AppStatus struct {
	App
	Sets   []instance.Set `json:"sets"`
	Events []Event        `json:"events"`
}

// Release is one immutable revision of an app.
type Release struct {
	App      string `json:"app"`
	Number   int    `json:"number"`
	Status   string `json:"status"`
	Message  string `json:"message,omitempty"`
	Artifact string `json:"artifact,omitempty"`
	// Image is the image the release runs, resolved once: on Kubernetes
	// its reference pinned by digest (name@sha256:...), on Docker the
	// image ID (sha256:...). Empty for process apps and until resolved.
	Image      string `json:"image,omitempty"`
	RollbackOf int    `json:"rollback_of,omitempty"`
	// Strategy is how the release was deployed: rolling, blue-green or
	// canary.
	Strategy string    `json:"strategy,omitempty"`
	Created  time.Time `json:"created_at"`
	Finished time.Time `json:"finished_at,omitzero"`
	Spec     string    `json:"spec,omitempty"`
}

// Event is one entry of the event log.
type Event struct {
	ID      int64          `json:"id"`
	Time    time.Time      `json:"time"`
	App     string         `json:"app"`
	Release int            `json:"release,omitempty"`
	Kind    string         `json:"kind"`
	Message string         `json:"message"`
	Data    map[string]any `json:"data,omitempty"`
}

// LogLine is one line of an app's log.
type LogLine struct {
	Time     time.Time `json:"time"`
	Release  int       `json:"release"`
	Instance string    `json:"instance"`
	Text     string    `json:"text"`
}

// ScaleRequest is the body of POST /v1/apps/{app}/scale.
type ScaleRequest struct {
	Replicas *int `json:"replicas"`
}

// RolloutStatus is GET /v1/apps/{app}/rollout: where the app's latest
// rollout stands.
type RolloutStatus = controller.RolloutStatus

// RollbackRequest is the body of POST /v1/apps/{app}/rollback.
type RollbackRequest struct {
	// To is the release to return to; 0 means the last good release
	// before the one serving now.
	To int `json:"to,omitempty"`
}
