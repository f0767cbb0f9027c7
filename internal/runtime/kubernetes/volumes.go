package kubernetes

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	metaac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/spec"
)

// LabelVolume names the spec volume a claim holds.
const LabelVolume = "skiff.sh/volume"

// ClaimName names the claim of an app's volume: <app>.<volume>. The dot,
// which neither an app nor a volume name may hold, keeps apps apart: with
// a dash, volume cache-data of app web and volume data of app web-cache
// would share web-cache-data.
func ClaimName(app, volume string) string { return app + "." + volume }

// claimSize is what a volume asks for: its size, or the spec's default.
func claimSize(v instance.Volume) resource.Quantity {
	if v.SizeBytes > 0 {
		return *resource.NewQuantity(v.SizeBytes, resource.BinarySI)
	}
	return resource.MustParse(string(spec.DefaultVolumeSize))
}

// Claim renders the claim of one of app's volumes: ReadWriteOnce, since a
// volume is an app's own disk, which every kind of storage offers;
// storageClass empty leaves the choice to the cluster's default class.
func Claim(app string, v instance.Volume, namespace, storageClass string) *coreac.PersistentVolumeClaimApplyConfiguration {
	l := objectLabels(app)
	l[LabelVolume] = v.Name
	s := coreac.PersistentVolumeClaimSpec().
		WithAccessModes(corev1.ReadWriteOnce).
		WithResources(coreac.VolumeResourceRequirements().WithRequests(corev1.ResourceList{
			corev1.ResourceStorage: claimSize(v),
		}))
	if storageClass != "" {
		s.WithStorageClassName(storageClass)
	}
	return coreac.PersistentVolumeClaim(ClaimName(app, v.Name), namespace).WithLabels(l).WithSpec(s)
}

// checkVolumes says what is wrong with t's volumes, or nil.
func checkVolumes(t instance.Template) error {
	seen := map[string]bool{}
	for _, v := range t.Volumes {
		switch {
		case len(validation.IsDNS1123Label(v.Name)) > 0:
			return fmt.Errorf("app %s: volume %q: a volume name is 1-63 lowercase letters, digits and '-'", t.App, v.Name)
		case seen[v.Name]:
			return fmt.Errorf("app %s: volume %q is named twice", t.App, v.Name)
		case !strings.HasPrefix(v.Path, "/") || path.Clean(v.Path) == "/":
			return fmt.Errorf("app %s: volume %s: mount path %q must be an absolute path below /", t.App, v.Name, v.Path)
		case v.SizeBytes < 0:
			return fmt.Errorf("app %s: volume %s: size %d is negative", t.App, v.Name, v.SizeBytes)
		}
		seen[v.Name] = true
	}
	return nil
}

// mountVolumes mounts each of t's volumes at its path in the app's
// container.
func mountVolumes(t instance.Template, c *coreac.ContainerApplyConfiguration) {
	for _, v := range t.Volumes {
		c.WithVolumeMounts(coreac.VolumeMount().WithName(v.Name).WithMountPath(v.Path))
	}
}

// withClaims gives the pod t's claims as its volumes and, since a
// ReadWriteOnce claim is mounted by one node at a time, keeps all of the
// app's pods, of every release, on one node.
//
// Where the claim's volume is bound to a node (local disks, k3s's
// local-path) the scheduler follows its node affinity by itself; a
// network disk (a cloud's block storage, Longhorn) may be attached
// anywhere but to one node at a time, and a pod on a second node would
// wait forever for the attachment. The required pod affinity covers
// both: the first pod goes where its volume can be, and every later one,
// a new release's included, joins it. The scheduler lets the first pod
// place itself since it matches its own affinity. The topology spread
// every other app gets would pull the other way, so it is left out.
func withClaims(t instance.Template, p *coreac.PodSpecApplyConfiguration) *coreac.PodSpecApplyConfiguration {
	for _, v := range t.Volumes {
		p.WithVolumes(coreac.Volume().WithName(v.Name).
			WithPersistentVolumeClaim(coreac.PersistentVolumeClaimVolumeSource().WithClaimName(ClaimName(t.App, v.Name))))
	}
	return p.WithAffinity(coreac.Affinity().WithPodAffinity(coreac.PodAffinity().
		WithRequiredDuringSchedulingIgnoredDuringExecution(coreac.PodAffinityTerm().
			WithTopologyKey(corev1.LabelHostname).
			WithLabelSelector(metaac.LabelSelector().WithMatchLabels(map[string]string{LabelApp: t.App, LabelManagedBy: ManagedBy})))))
}

// ensureClaims makes sure each of t's volumes has its claim before a
// release's pods ask for it: a missing one is applied; an existing one
// is kept, and grown when t asks for more than it holds. A claim never
// shrinks (Kubernetes refuses it), so a smaller size keeps the larger
// claim. A claim the cluster refuses (a storage class that cannot grow
// its volumes, a bad class name) fails the release with the cluster's
// reason; one still being deleted, after its app was destroyed, is
// waited for by the controller's retries.
func (r *Runtime) ensureClaims(ctx context.Context, t instance.Template) error {
	claims := r.opts.Client.CoreV1().PersistentVolumeClaims(r.opts.Namespace)
	for _, v := range t.Volumes {
		name := ClaimName(t.App, v.Name)
		grow := ""
		cur, err := claims.Get(ctx, name, metav1.GetOptions{})
		if err := notOurs(cur, err); err != nil {
			return fmt.Errorf("volume %s: %w", v.Name, err)
		}
		want := Claim(t.App, v, r.opts.Namespace, r.render.StorageClass)
		if err == nil {
			if owner := cur.Labels[LabelApp]; owner != t.App {
				return fmt.Errorf("volume %s: %w: claim %s/%s belongs to app %q", v.Name, ErrNotOurs, r.opts.Namespace, name, owner)
			}
			if cur.DeletionTimestamp != nil {
				return fmt.Errorf("volume %s: claim %s/%s is being deleted (its app was destroyed); it is made again once it is gone", v.Name, r.opts.Namespace, name)
			}
			// What the claim holds: what it asked, or more when its
			// volume is larger.
			requested := cur.Spec.Resources.Requests.Storage().DeepCopy()
			held := requested
			if c, ok := cur.Status.Capacity[corev1.ResourceStorage]; ok && c.Cmp(held) > 0 {
				held = c
			}
			asked := claimSize(v)
			if asked.Cmp(requested) < 0 {
				r.log.Info("volume keeps its larger claim: claims never shrink", "app", t.App, "volume", v.Name, "claim", requested.String(), "asked", asked.String())
			}
			if asked.Cmp(held) <= 0 {
				continue
			}
			// Growing re-applies what the claim was made with; its
			// storage class cannot change, so it is the claim's own.
			class := ""
			if cur.Spec.StorageClassName != nil {
				class = *cur.Spec.StorageClassName
			}
			want = Claim(t.App, v, r.opts.Namespace, class)
			grow = fmt.Sprintf("; it holds %s and was asked for %s: keep size: at %s or less, or use a storage class that allows volume expansion (allowVolumeExpansion: true)", held.String(), asked.String(), held.String())
		}
		_, err = claims.Apply(ctx, want, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
		if apierrors.IsInvalid(err) || apierrors.IsForbidden(err) {
			return fmt.Errorf("app %s: volume %s: %w", t.App, v.Name, cannotRun("the cluster refused claim "+name+": "+err.Error()+grow))
		}
		if err != nil {
			return fmt.Errorf("volume %s: apply claim %s: %w", v.Name, name, err)
		}
		size := claimSize(v)
		r.log.Info("volume claim applied", "app", t.App, "volume", v.Name, "claim", name, "size", size.String())
	}
	return nil
}

// DeleteVolumes deletes the claims of a destroyed app, which is what
// skiff destroy does with its volumes on every runtime: the data goes
// with the app. Only claims labelled as skiff's and as that app's are
// deleted. Kubernetes keeps a claim until no pod uses it any more, and
// what becomes of the volume behind it is its reclaim policy's (a
// dynamically provisioned one is deleted by default).
func (r *Runtime) DeleteVolumes(ctx context.Context, app string) error {
	claims := r.opts.Client.CoreV1().PersistentVolumeClaims(r.opts.Namespace)
	list, err := claims.List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{LabelApp: app, LabelManagedBy: ManagedBy}).String(),
	})
	if err != nil {
		return fmt.Errorf("list volume claims of %s: %w", app, err)
	}
	var names []string
	for _, pvc := range list.Items {
		if pvc.DeletionTimestamp != nil {
			continue
		}
		uid := pvc.UID
		err := claims.Delete(ctx, pvc.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete volume claim %s: %w", pvc.Name, err)
		}
		names = append(names, pvc.Name)
	}
	if len(names) > 0 {
		slices.Sort(names)
		r.log.Info("volume claims deleted", "app", app, "claims", names)
	}
	return nil
}
