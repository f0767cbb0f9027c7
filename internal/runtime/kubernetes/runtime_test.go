package kubernetes

import "github.com/skiff-sh/skiff/internal/controller"

// The runtime is a controller.Runtime; the controller is not imported
// by the package itself (runtimes know nothing of it).
var _ controller.Runtime = (*Runtime)(nil)
