package kubetest

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// LabelTestVolume marks the PersistentVolumes tests make, with the
// namespace of the claim each is for.
const LabelTestVolume = "kubetest.skiff.sh/volume-for"

// Volume describes a PersistentVolume a test provisions by hand, as an
// admin without a dynamic provisioner does.
type Volume struct {
	// Node is the node that holds the volume; pods using it must run
	// there. Required.
	Node string
	// Size is its capacity, such as 1Gi. Required.
	Size string
	// Class is its storage class; a claim binds only to a volume of its
	// own class. Default "": claims without a class.
	Class string
	// Namespace and Claim name the claim it is reserved for; no other
	// claim binds to it. Required.
	Namespace, Claim string
}

// HostPathVolume makes a ReadWriteOnce PersistentVolume on a hostPath of
// v.Node, with that node as its node affinity, reserved for one claim:
// the persistentvolume controller binds the two once the claim exists. No
// container runs on kwok's nodes, so nothing is ever written to the path.
// Its reclaim policy is Retain, so the volume outlives its claim as a
// hand-made one does; it is deleted when t ends.
func (c *Cluster) HostPathVolume(t testing.TB, v Volume) *corev1.PersistentVolume {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "kubetest-" + v.Namespace + "-",
			Labels:       map[string]string{LabelTestVolume: v.Namespace},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(v.Size)},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimRetain,
			StorageClassName:              v.Class,
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: v.Namespace, Name: v.Claim},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: "/var/lib/kubetest/" + v.Namespace + "/" + v.Claim},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{v.Node},
				}}}},
			}},
		},
	}
	pv, err := c.Client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create persistent volume for %s/%s: %v", v.Namespace, v.Claim, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.Client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("delete persistent volume %s: %v", pv.Name, err)
		}
	})
	return pv
}
