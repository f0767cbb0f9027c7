package controller

import (
	"context"

	"github.com/skiff-sh/skiff/internal/instance"
)

// Runtime is the set level of a runtime: it keeps each release's instance
// set at its size and reports what runs. The supervisor implements it over
// processes and containers; Kubernetes implements it with ReplicaSets.
//
// The controller never shrinks a set with Scale while it has instances
// that may carry traffic: it marks the leaving instance draining, takes it
// out of the edge, waits for its requests to finish, and only then calls
// Remove.
type Runtime interface {
	// Sets reports every instance set of app, ordered by release.
	Sets(ctx context.Context, app string) ([]instance.Set, error)
	// Apps lists the apps that have any set, so instances of a destroyed
	// app are found and stopped.
	Apps(ctx context.Context) ([]string, error)
	// Scale makes the set of t.Release hold n instances, creating it if
	// needed. Growing starts instances; shrinking stops the newest
	// instances that are not ready first.
	Scale(ctx context.Context, t instance.Template, n int) error
	// MarkDraining reports the instance as Draining from now on; it keeps
	// running and keeps its place in the set.
	MarkDraining(ctx context.Context, app, id string) error
	// Remove stops one instance and shrinks its set by one.
	Remove(ctx context.Context, app, id string) error
	// DeleteSet stops every instance of the release's set and forgets it.
	DeleteSet(ctx context.Context, app string, release int) error
	// Watch calls fn with the app's name whenever one of its instances
	// changes state. fn must not block.
	Watch(fn func(app string))
}
