package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/skiff-sh/skiff/internal/runtime/kubernetes"
)

func newKubeCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kube",
		Short: "Run skiff itself in a Kubernetes cluster",
		Long: `Install or remove what runs skiff in a Kubernetes cluster: a namespace,
a service account allowed only what skiff does in that namespace, the
control plane (one replica, its store on a PersistentVolumeClaim) and the
Services of its edge and API. Everything carries
app.kubernetes.io/managed-by=skiff; nothing else is touched.`,
	}
	cmd.AddCommand(newKubeInstallCmd(), newKubeUninstallCmd())
	return cmd
}

func newKubeInstallCmd() *cobra.Command {
	var o kubernetes.InstallOptions
	var apply bool
	var kubeconfig string
	cmd := &cobra.Command{
		Use:   "install",
		Short: "Print (or with --apply, apply) what runs skiff in a cluster",
		Long: `Print the Kubernetes objects that run skiff in a cluster as YAML, for
review or kubectl apply -f -. With --apply they are applied server-side
(field manager "skiff"); an object of the same name that skiff did not
create stops the install before anything changes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			objs, err := kubernetes.InstallObjects(o)
			if err != nil {
				return err
			}
			if !apply {
				return kubernetes.WriteYAML(cmd.OutOrStdout(), objs)
			}
			return onCluster(cmd, kubeconfig, 2*time.Minute, objs, kubernetes.Apply)
		},
	}
	f := cmd.Flags()
	f.BoolVar(&apply, "apply", false, "apply the objects to the cluster instead of printing them")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file; default $KUBECONFIG or ~/.kube/config")
	f.StringVar(&o.Namespace, "namespace", "skiff", "namespace of skiff and its apps")
	f.StringVar(&o.Image, "image", "", "skiff's container image (required)")
	f.StringVar(&o.Domain, "domain", "localhost", "base domain: app NAME answers on NAME.<domain>")
	f.StringVar(&o.EdgeService, "edge-service", "LoadBalancer", "type of the edge's Service: LoadBalancer, NodePort or ClusterIP")
	f.StringVar(&o.Storage, "storage", "1Gi", "size of the control plane's volume")
	f.StringVar(&o.StorageClass, "storage-class", "", "storage class of that volume; default the cluster's")
	f.StringVar(&o.AppStorageClass, "apps-storage-class", "", "storage class of the apps' volumes; default the cluster's")
	f.StringSliceVar(&o.InsecureRegistries, "insecure-registry", nil, "registry HOST[:PORT] the control plane may resolve image tags from over plain HTTP (repeatable)")
	return cmd
}

func newKubeUninstallCmd() *cobra.Command {
	var namespace, kubeconfig string
	cmd := &cobra.Command{
		Use:   "uninstall",
		Short: "Remove what skiff kube install created, and the apps in its namespace",
		Long: `Delete each object skiff kube install creates that exists and is
labelled as skiff's, and wait until they are gone. When the install created
the namespace, deleting it deletes the apps in it too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// Only the names matter for deleting; the image is a stand-in.
			objs, err := kubernetes.InstallObjects(kubernetes.InstallOptions{Namespace: namespace, Image: "unused"})
			if err != nil {
				return err
			}
			return onCluster(cmd, kubeconfig, 5*time.Minute, objs, kubernetes.Delete)
		},
	}
	cmd.Flags().StringVar(&namespace, "namespace", "skiff", "namespace skiff was installed in")
	cmd.Flags().StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file; default $KUBECONFIG or ~/.kube/config")
	return cmd
}

// onCluster runs an Apply or Delete of objs on the cluster kubeconfig
// reaches, printing what it does, within timeout.
func onCluster(cmd *cobra.Command, kubeconfig string, timeout time.Duration, objs []*unstructured.Unstructured,
	do func(context.Context, dynamic.Interface, []*unstructured.Unstructured, func(string)) error) error {
	rc, err := kubernetes.RESTConfig(kubeconfig)
	if err != nil {
		return err
	}
	dyn, err := dynamic.NewForConfig(rc)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
	defer cancel()
	return do(ctx, dyn, objs, func(s string) { fmt.Fprintln(cmd.OutOrStdout(), s) })
}
