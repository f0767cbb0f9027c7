package kubernetes

import (
	"context"
	"errors"
	"fmt"

	"github.com/skiff-sh/skiff/internal/spec"
)

// ErrBuildUnsupported refuses build: on a cluster: an image built on the
// server exists only there, and nodes pull theirs from a registry.
var ErrBuildUnsupported = errors.New("build: is not supported on the kubernetes runtime")

// Images resolves a container app's image on a cluster (the controller's
// Images): the reference the spec names, which every node pulls itself.
// There is nothing local to prune or purge.
type Images struct{}

// Resolve returns the spec's image reference, or refuses build:.
func (Images) Resolve(ctx context.Context, app string, n int, sp *spec.Spec, dir string, progress func(string)) (string, error) {
	if sp.Build != "" {
		return "", fmt.Errorf("app %s: %w: build the image, push it to a registry the cluster can pull from, and name it with image: (ideally by digest, name@sha256:...)", app, ErrBuildUnsupported)
	}
	if sp.Image == "" {
		return "", fmt.Errorf("app %s has a command but no image: %w", app, ErrCommandOnly)
	}
	return sp.Image, nil
}

// Prune does nothing: images live in the registry and on the nodes.
func (Images) Prune(ctx context.Context, app string, keep []string) error { return nil }

// Purge does nothing, for the same reason.
func (Images) Purge(ctx context.Context, app string) error { return nil }
