package kubernetes

import (
	"context"
	"fmt"
	"os"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// RESTConfig reaches a cluster: with the kubeconfig file when one is
// given, else with the pod's service account when skiff runs in a
// cluster, else with $KUBECONFIG or ~/.kube/config.
func RESTConfig(kubeconfig string) (*rest.Config, error) {
	if kubeconfig == "" && os.Getenv("KUBERNETES_SERVICE_HOST") != "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster credentials: %w", err)
		}
		return cfg, nil
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		if _, err := os.Stat(kubeconfig); err != nil {
			return nil, fmt.Errorf("--kubeconfig: %w", err)
		}
		rules.ExplicitPath = kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubeconfig: %w (give --kubeconfig FILE, or run skiff inside the cluster)", err)
	}
	return cfg, nil
}

// Connect makes a started runtime for namespace from a REST config,
// after checking that the cluster answers and the namespace exists, so a
// wrong flag is reported at start rather than as a stalled deploy.
func Connect(ctx context.Context, cfg *rest.Config, opts Options) (*Runtime, error) {
	client, err := clientset.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	if opts.Namespace == "" {
		return nil, fmt.Errorf("kubernetes runtime: a namespace is required (--namespace)")
	}
	_, err = client.CoreV1().Namespaces().Get(ctx, opts.Namespace, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Errorf("namespace %s does not exist in the cluster at %s: create it (kubectl create namespace %s) or choose another with --namespace", opts.Namespace, cfg.Host, opts.Namespace)
	case apierrors.IsForbidden(err):
		// Least-privilege credentials may not read namespaces; listing
		// the namespace's objects at Start tells whether they suffice.
	case err != nil:
		return nil, fmt.Errorf("kubernetes API at %s: %w", cfg.Host, err)
	}
	opts.Client = client
	rt, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := rt.Start(ctx); err != nil {
		rt.Close()
		return nil, err
	}
	return rt, nil
}
