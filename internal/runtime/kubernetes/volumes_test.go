package kubernetes

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/kubetest"
)

// Names of claims never collide between apps, whatever dashes their
// names hold.
func TestClaimNamesKeepAppsApart(t *testing.T) {
	if a, b := ClaimName("web", "cache-data"), ClaimName("web-cache", "data"); a == b {
		t.Errorf("apps web and web-cache share claim %s", a)
	}
	c := Claim("web", instance.Volume{Name: "data", Path: "/d", SizeBytes: 3 << 30}, "ns", "fast")
	if *c.Spec.StorageClassName != "fast" || c.Spec.Resources.Requests.Storage().String() != "3Gi" {
		t.Errorf("claim asks class %q and %s, want fast and 3Gi", *c.Spec.StorageClassName, c.Spec.Resources.Requests.Storage())
	}
	if c.Labels[LabelManagedBy] != ManagedBy || c.Labels[LabelApp] != "web" || c.Labels[LabelVolume] != "data" {
		t.Errorf("claim labels %v", c.Labels)
	}
}

// volumeEnv is a runtime whose claims get a storage class of the test's
// own, so that only the volumes the test makes can bind to them: volumes
// belong to the whole cluster, which tests share.
func volumeEnv(t *testing.T) (*testEnv, string) {
	t.Helper()
	class := fmt.Sprintf("kubetest-%d", time.Now().UnixNano())
	return newEnvWith(t, Options{StorageClass: class}), class
}

func (e *testEnv) claim(name string) *corev1.PersistentVolumeClaim {
	e.t.Helper()
	c, err := e.c.Client.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatalf("claim %s: %v", name, err)
	}
	return c
}

// podsMount checks that every pod of set runs on node with claim
// mounted at path.
func (e *testEnv) podsMount(set instance.Set, node, claim, path string) {
	e.t.Helper()
	for _, in := range set.Instances {
		p := e.pod(in.ID)
		if p.Spec.NodeName != node {
			e.t.Errorf("pod %s runs on %s, not on %s, which holds its volume", p.Name, p.Spec.NodeName, node)
		}
		i := slices.IndexFunc(p.Spec.Volumes, func(v corev1.Volume) bool {
			return v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim
		})
		if i < 0 {
			e.t.Errorf("pod %s does not use claim %s: %+v", p.Name, claim, p.Spec.Volumes)
			continue
		}
		if !slices.ContainsFunc(p.Spec.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == p.Spec.Volumes[i].Name && m.MountPath == path
		}) {
			e.t.Errorf("pod %s does not mount claim %s at %s: %+v", p.Name, claim, path, p.Spec.Containers[0].VolumeMounts)
		}
	}
}

// An app's volume is one claim of the app, bound by the real
// persistentvolume controller to a volume an admin made; every release's
// pods run on the volume's node with it mounted; it never shrinks, grows
// only where the cluster allows, and goes with the app, leaving what is
// not skiff's alone.
//
// Not parallel: the volume is on one node, and a parallel test deletes a
// node to see pods move; pods bound to this volume could only wait for
// the node to come back. Tests that are not parallel run before those
// that are.
func TestVolumeClaimOutlivesReleases(t *testing.T) {
	e, class := volumeEnv(t)
	nodes := e.c.Nodes()
	node := nodes[len(nodes)-1]
	claim := ClaimName("db", "data")
	pv := e.c.HostPathVolume(t, kubetest.Volume{Node: node, Size: "2Gi", Class: class, Namespace: e.ns, Claim: claim})

	tmpl := func(release int, size int64) instance.Template {
		tm := appTemplate("db", release)
		tm.Volumes = []instance.Volume{{Name: "data", Path: "/var/lib/db", SizeBytes: size}}
		return tm
	}
	if err := e.rt.Scale(e.ctx(), tmpl(1, 1<<30), 2); err != nil {
		t.Fatal(err)
	}
	set := e.awaitSet("db", 1, 2, 2*time.Minute)
	pvc := e.claim(claim)
	if pvc.Status.Phase != corev1.ClaimBound || pvc.Spec.VolumeName != pv.Name {
		t.Errorf("claim %s is %s on volume %q, want bound to %s", claim, pvc.Status.Phase, pvc.Spec.VolumeName, pv.Name)
	}
	if l := pvc.Labels; l[LabelManagedBy] != ManagedBy || l[LabelApp] != "db" || l[LabelVolume] != "data" {
		t.Errorf("claim labels %v, want skiff's, of app db and volume data", l)
	}
	if got := pvc.Spec.Resources.Requests.Storage(); got.Cmp(resource.MustParse("1Gi")) != 0 || pvc.Spec.StorageClassName == nil || *pvc.Spec.StorageClassName != class ||
		!slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}) {
		t.Errorf("claim asks %s of class %v, modes %v; want 1Gi of %s, ReadWriteOnce", got, pvc.Spec.StorageClassName, pvc.Spec.AccessModes, class)
	}
	if !slices.ContainsFunc(pvc.ManagedFields, func(m metav1.ManagedFieldsEntry) bool {
		return m.Manager == FieldManager && m.Operation == metav1.ManagedFieldsOperationApply
	}) {
		t.Errorf("claim was not applied server-side by %s: %+v", FieldManager, pvc.ManagedFields)
	}
	e.podsMount(set, node, claim, "/var/lib/db")

	// The next release mounts the same claim, on the same node.
	if err := e.rt.Scale(e.ctx(), tmpl(2, 1<<30), 2); err != nil {
		t.Fatal(err)
	}
	e.podsMount(e.awaitSet("db", 2, 2, 2*time.Minute), node, claim, "/var/lib/db")
	if got := e.claim(claim); got.UID != pvc.UID {
		t.Errorf("release 2 has claim %s, want release 1's %s", got.UID, pvc.UID)
	}

	// Asking for no more than the volume holds (2Gi), or less than the
	// claim asked, changes nothing.
	for release, size := range map[int]int64{3: 2 << 30, 4: 512 << 20} {
		if err := e.rt.Scale(e.ctx(), tmpl(release, size), 1); err != nil {
			t.Fatalf("release %d asking %d bytes: %v", release, size, err)
		}
		e.podsMount(e.awaitSet("db", release, 1, 2*time.Minute), node, claim, "/var/lib/db")
	}
	if got := e.claim(claim); got.Spec.Resources.Requests.Storage().Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("claim asks %s after releases asking 2Gi and 512Mi, want it left at 1Gi", got.Spec.Resources.Requests.Storage())
	}
	// More than that: a volume made by hand cannot grow, and the cluster
	// says so; the release fails at once and nothing changes.
	err := e.rt.Scale(e.ctx(), tmpl(5, 4<<30), 1)
	if !errors.Is(err, instance.ErrCannotRun) || !strings.Contains(err.Error(), "keep size: at 2Gi or less") {
		t.Errorf("release asking 4Gi: %v; want a cannot-run error saying to keep size: at 2Gi", err)
	}
	t.Logf("a release asking 4Gi is refused: %v", err)
	if _, err := e.c.Client.AppsV1().ReplicaSets(e.ns).Get(e.ctx(), SetName("db", 5), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a release whose claim was refused has a replicaset: %v", err)
	}

	// Destroying the app deletes its claim and nothing else: not a claim
	// of its name that skiff did not make, nor the volume, which its
	// reclaim policy keeps.
	foreign := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: ClaimName("db", "scratch"), Labels: map[string]string{LabelApp: "db"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &class,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}},
		},
	}
	if _, err := e.c.Client.CoreV1().PersistentVolumeClaims(e.ns).Create(e.ctx(), foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for release := 1; release <= 4; release++ {
		if err := e.rt.DeleteSet(e.ctx(), "db", release); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.rt.DeleteVolumes(e.ctx(), "db"); err != nil {
		t.Fatal(err)
	}
	kubetest.Await(t, 2*time.Minute, "claim "+claim+" gone and its volume released", func() error {
		_, err := e.c.Client.CoreV1().PersistentVolumeClaims(e.ns).Get(e.ctx(), claim, metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("claim: %v", err)
		}
		got, err := e.c.Client.CoreV1().PersistentVolumes().Get(e.ctx(), pv.Name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("the volume behind the claim: %w", err)
		}
		if got.Status.Phase != corev1.VolumeReleased {
			return fmt.Errorf("volume %s is %s", pv.Name, got.Status.Phase)
		}
		return nil
	})
	if got := e.claim(foreign.Name); got.DeletionTimestamp != nil {
		t.Errorf("claim %s, not skiff's, is being deleted", foreign.Name)
	}
	// Deleting what is gone is not an error: the controller may retry.
	if err := e.rt.DeleteVolumes(e.ctx(), "db"); err != nil {
		t.Errorf("deleting deleted claims: %v", err)
	}
}

// A claim of the name skiff would use that skiff did not make stops the
// release before anything is created, and is left as it was.
func TestForeignClaimIsLeftAlone(t *testing.T) {
	t.Parallel()
	e, _ := volumeEnv(t)
	class := "none"
	foreign := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: ClaimName("wiki", "data"), Labels: map[string]string{"owner": "someone-else", LabelApp: "wiki"}},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany},
			StorageClassName: &class,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("5Gi")}},
		},
	}
	made, err := e.c.Client.CoreV1().PersistentVolumeClaims(e.ns).Create(e.ctx(), foreign, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := appTemplate("wiki", 1)
	tmpl.Volumes = []instance.Volume{{Name: "data", Path: "/data"}}
	if err := e.rt.Scale(e.ctx(), tmpl, 1); !errors.Is(err, ErrNotOurs) {
		t.Fatalf("Scale over a foreign claim: %v, want ErrNotOurs", err)
	}
	if got := e.claim(foreign.Name); got.ResourceVersion != made.ResourceVersion {
		t.Errorf("the foreign claim was changed: %+v", got)
	}
	if _, err := e.c.Client.AppsV1().ReplicaSets(e.ns).Get(e.ctx(), SetName("wiki", 1), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a refused release has a replicaset: %v", err)
	}
	if err := e.rt.DeleteVolumes(e.ctx(), "wiki"); err != nil {
		t.Fatal(err)
	}
	if got := e.claim(foreign.Name); got.DeletionTimestamp != nil {
		t.Error("DeleteVolumes deletes a claim skiff did not make")
	}
}
