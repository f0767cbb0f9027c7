package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/skiff-sh/skiff/internal/controller"
	"github.com/skiff-sh/skiff/internal/runtime/kubernetes"
	"github.com/skiff-sh/skiff/internal/spec"
)

var _ controller.Runtime = (*kubernetes.Runtime)(nil)

// kubeAdmit refuses, at deploy, the specs a cluster cannot run, pointing
// at the field and saying what to do instead. (The runtime refuses them
// too, failing a release that got past this, such as one deployed before
// the server moved to Kubernetes.)
func kubeAdmit(sp *spec.Spec) (path, message string) {
	const local = "or run this app with skiff server --runtime local"
	switch {
	case sp.Build != "":
		return "build", "this server runs apps on Kubernetes (--runtime kubernetes), where builds on the server's Docker Engine cannot run: build and push the image to a registry the cluster pulls from, and name it in image:, " + local
	case !sp.IsContainer():
		return "command", "this server runs apps on Kubernetes (--runtime kubernetes), which runs container images only: give the app an image: and a port:, " + local
	}
	return "", ""
}

// KubeConfig is what --runtime kubernetes needs.
type KubeConfig struct {
	// Kubeconfig is a kubeconfig file. Default: the pod's service account
	// when skiff runs in a cluster, else $KUBECONFIG or ~/.kube/config.
	Kubeconfig string
	// Namespace holds every app's objects; it must exist. Required.
	Namespace string
	// StorageClass of the apps' volume claims. Default: the cluster's
	// default storage class.
	StorageClass string
	// InsecureRegistries are registries (host or host:port) that images
	// may be resolved from over plain HTTP; registries on loopback
	// always may be. Default none.
	InsecureRegistries []string
}

// newKubeImages checks --insecure-registry and returns what pins image
// apps' tags to digests on a cluster, or nil without --runtime kubernetes.
func newKubeImages(cfg Config) (*kubernetes.Images, error) {
	if cfg.Runtime != "kubernetes" {
		if len(cfg.Kube.InsecureRegistries) > 0 {
			return nil, fmt.Errorf("--insecure-registry applies to --runtime kubernetes only: with the local runtime, Docker Engine pulls images, so list the registry in insecure-registries of /etc/docker/daemon.json instead")
		}
		return nil, nil
	}
	return kubernetes.NewImages(kubernetes.ImagesOptions{Insecure: cfg.Kube.InsecureRegistries})
}

// kubeVolumes is the cluster's Images that also deletes a destroyed
// app's volume claims, as destroy removes an app's Docker volumes on one
// host.
type kubeVolumes struct {
	controller.Images
	rt *kubernetes.Runtime
}

func (k kubeVolumes) Purge(ctx context.Context, app string) error {
	return errors.Join(k.Images.Purge(ctx, app), k.rt.DeleteVolumes(ctx, app))
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
		Namespace:    cfg.Kube.Namespace,
		StopGrace:    cfg.StopGrace,
		StorageClass: cfg.Kube.StorageClass,
		Logger:       log.With("component", "kubernetes"),
	})
	if err != nil {
		return nil, fmt.Errorf("--runtime kubernetes: %w", err)
	}
	log.Info("apps run on kubernetes", "api", rc.Host, "namespace", cfg.Kube.Namespace)
	return rt, nil
}
