package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/kubetest"
	"github.com/skiff-sh/skiff/internal/runtime/kubernetes"
)

// On Kubernetes a spec's volume is a claim of the app, bound to a volume
// an admin made; every release's pods run where it is, with it mounted;
// skiff destroy deletes the claim, as it removes an app's Docker volumes
// on one host, and leaves the volume to its reclaim policy.
func TestServerKubernetesVolumes(t *testing.T) {
	cl, c, ns := kubeServer(t)
	nodes := c.Nodes()
	node := nodes[len(nodes)-1]
	claim := kubernetes.ClaimName("db", "data")
	pv := c.HostPathVolume(t, kubetest.Volume{Node: node, Size: "2Gi", Namespace: ns, Claim: claim})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	spec := "name: db\nimage: " + testImage("db", 1) + "\nport: 5432\nreplicas: 2\nenv: {GEN: \"%d\"}\nvolumes: [{name: data, path: /var/lib/db, size: 2Gi}]\n"
	var uid string
	for gen := 1; gen <= 2; gen++ {
		rel := deploySpec(t, cl, fmt.Sprintf(spec, gen))
		if got := awaitRelease(t, cl, "db", rel.Number); got.Status != "complete" {
			t.Fatalf("release %d is %s: %s", rel.Number, got.Status, got.Message)
		}
		pvc, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("claim of release %d: %v", rel.Number, err)
		}
		if pvc.Spec.VolumeName != pv.Name || pvc.Spec.Resources.Requests.Storage().Cmp(resource.MustParse("2Gi")) != 0 {
			t.Errorf("claim %s is on volume %q asking %s; want %s, 2Gi", claim, pvc.Spec.VolumeName, pvc.Spec.Resources.Requests.Storage(), pv.Name)
		}
		if uid != "" && string(pvc.UID) != uid {
			t.Errorf("release %d has a new claim %s, want the first release's %s", rel.Number, pvc.UID, uid)
		}
		uid = string(pvc.UID)
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: fmt.Sprintf("%s=db,%s=%d", kubernetes.LabelApp, kubernetes.LabelRelease, rel.Number)})
		if err != nil || len(pods.Items) != 2 {
			t.Fatalf("pods of release %d: %d, %v; want 2", rel.Number, len(pods.Items), err)
		}
		for _, p := range pods.Items {
			if p.Spec.NodeName != node || len(p.Spec.Volumes) != 1 || p.Spec.Volumes[0].PersistentVolumeClaim == nil ||
				p.Spec.Volumes[0].PersistentVolumeClaim.ClaimName != claim || p.Spec.Containers[0].VolumeMounts[0].MountPath != "/var/lib/db" {
				t.Errorf("pod %s on %s with volumes %+v, mounts %+v; want claim %s at /var/lib/db on %s",
					p.Name, p.Spec.NodeName, p.Spec.Volumes, p.Spec.Containers[0].VolumeMounts, claim, node)
			}
		}
	}

	if err := cl.Destroy(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	kubetest.Await(t, 2*time.Minute, "claim of db gone, its volume released", func() error {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d pods left", len(pods.Items))
		}
		if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, claim, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return fmt.Errorf("claim: %v", err)
		}
		got, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("volume: %w", err)
		}
		if got.Status.Phase != corev1.VolumeReleased {
			return fmt.Errorf("volume %s is %s", pv.Name, got.Status.Phase)
		}
		return nil
	})
}
