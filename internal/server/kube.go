package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/skiff-sh/skiff/internal/controller"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/runtime/kubernetes"
	"github.com/skiff-sh/skiff/internal/store"
)

var _ controller.Runtime = kubeRuntime{}

// kubeRuntime is the kubernetes runtime as the controller sees it: a
// release the cluster cannot run (a command-only app, say) fails at its
// first Scale with the runtime's reason, within a moment of the deploy,
// instead of staying pending with nothing started.
type kubeRuntime struct {
	*kubernetes.Runtime
	st *store.Store
}

func (k kubeRuntime) Scale(ctx context.Context, t instance.Template, n int) error {
	if err := kubernetes.CheckTemplate(t); err != nil {
		if ferr := k.st.FinishRelease(ctx, t.App, t.Release, store.StatusFailed, err.Error()); ferr != nil {
			return fmt.Errorf("fail release %d of %s: %w", t.Release, t.App, ferr)
		}
		return err
	}
	return k.Runtime.Scale(ctx, t, n)
}

// KubeConfig is what --runtime kubernetes needs.
type KubeConfig struct {
	// Kubeconfig is a kubeconfig file. Default: the pod's service account
	// when skiff runs in a cluster, else $KUBECONFIG or ~/.kube/config.
	Kubeconfig string
	// Namespace holds every app's objects; it must exist. Required.
	Namespace string
}

// startKube connects to the cluster and watches the namespace, failing
// at start, with what to fix, when the flags do not reach it.
func startKube(ctx context.Context, cfg Config, log *slog.Logger) (*kubernetes.Runtime, error) {
	if cfg.Kube.Namespace == "" {
		return nil, fmt.Errorf("--runtime kubernetes needs --namespace: the namespace that holds skiff's apps")
	}
	rc, err := kubernetes.RESTConfig(cfg.Kube.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--runtime kubernetes: %w", err)
	}
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	rt, err := kubernetes.Connect(sctx, rc, kubernetes.Options{
		Namespace: cfg.Kube.Namespace,
		StopGrace: cfg.StopGrace,
		Logger:    log.With("component", "kubernetes"),
	})
	if err != nil {
		return nil, fmt.Errorf("--runtime kubernetes: %w", err)
	}
	log.Info("apps run on kubernetes", "api", rc.Host, "namespace", cfg.Kube.Namespace)
	return rt, nil
}
