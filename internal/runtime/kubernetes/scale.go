package kubernetes

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/util/retry"

	"github.com/skiff-sh/skiff/internal/instance"
)

// Scale makes the ReplicaSet of t.Release hold n pods. A new release's
// ReplicaSet is created at size n together with the app's
// PodDisruptionBudget; an existing one gets its template applied again
// only when its rendering changed, and its size through the scale
// subresource. Shrinking takes draining pods first, then pods that are
// not ready, then the newest (markLeaving).
func (r *Runtime) Scale(ctx context.Context, t instance.Template, n int) error {
	if err := r.ready(); err != nil {
		return fmt.Errorf("scale %s release %d: %w", t.App, t.Release, err)
	}
	if n < 0 {
		return fmt.Errorf("scale %s release %d: size %d is negative", t.App, t.Release, n)
	}
	ac, err := ReplicaSet(t, r.render)
	if err != nil {
		return fmt.Errorf("scale %s release %d: %w", t.App, t.Release, err)
	}
	name := *ac.Name
	rsClient := r.opts.Client.AppsV1().ReplicaSets(r.opts.Namespace)

	cached, err := r.rsets.Get(name)
	if apierrors.IsNotFound(err) {
		// A new release's pods ask for the app's volume claims at once.
		if err := r.ensureClaims(ctx, t); err != nil {
			return fmt.Errorf("scale %s release %d: %w", t.App, t.Release, err)
		}
		created, err := r.create(ctx, t, ac, n)
		if err != nil {
			return fmt.Errorf("scale %s release %d: %w", t.App, t.Release, err)
		}
		if created {
			r.awaitCache(ctx, func() bool {
				_, errRS := r.rsets.Get(name)
				_, errSvc := r.services.Get(ServiceName(t.App, t.Release))
				return errRS == nil && errSvc == nil
			})
			return nil
		}
	} else if err != nil {
		return fmt.Errorf("scale %s release %d: %w", t.App, t.Release, err)
	} else if cached.Annotations[AnnotationTemplateHash] != ac.Annotations[AnnotationTemplateHash] {
		// The rendering changed (a newer skiff): apply it. Pods already
		// running keep their template; new ones get this one.
		if _, err := rsClient.Apply(ctx, ac, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			return fmt.Errorf("scale %s release %d: apply replicaset %s: %w", t.App, t.Release, name, err)
		}
	}
	if err := r.ensureService(ctx, t, name); err != nil {
		return fmt.Errorf("scale %s release %d: %w", t.App, t.Release, err)
	}
	if err := r.markLeaving(ctx, t, n); err != nil {
		return fmt.Errorf("scale %s release %d to %d: %w", t.App, t.Release, n, err)
	}
	if err := r.resize(ctx, name, func(int32) int32 { return int32(n) }); err != nil {
		return fmt.Errorf("scale %s release %d to %d: %w", t.App, t.Release, n, err)
	}
	// Shrinking, the pods that leave are gone from the set on return, as
	// they are on every runtime.
	r.awaitCache(ctx, func() bool {
		rs, err := r.rsets.Get(name)
		return err == nil && replicas(rs) == n && r.activePods(setLabels(t.App, t.Release)) <= n
	})
	return nil
}

// create makes a release's ReplicaSet at size n, its Service, and the
// app's budget. It reports false when the ReplicaSet already existed.
//
// The ReplicaSet is created, not applied: an applied object would have
// skiff's apply own its replicas, and a later apply without them would
// reset the size; created, the size belongs to the create and the
// scale subresource, and later applies own only the template.
func (r *Runtime) create(ctx context.Context, t instance.Template, ac any, n int) (bool, error) {
	app := t.App
	pdbs := r.opts.Client.PolicyV1().PodDisruptionBudgets(r.opts.Namespace)
	if err := notOurs(pdbs.Get(ctx, app, metav1.GetOptions{})); err != nil {
		return false, err
	}
	pdb := PodDisruptionBudget(app, r.opts.Namespace)
	if _, err := pdbs.Apply(ctx, pdb,
		metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return false, fmt.Errorf("apply poddisruptionbudget %s: %w", app, err)
	}
	b, err := json.Marshal(ac)
	if err != nil {
		return false, fmt.Errorf("render replicaset: %w", err)
	}
	var rs appsv1.ReplicaSet
	if err := json.Unmarshal(b, &rs); err != nil {
		return false, fmt.Errorf("render replicaset: %w", err)
	}
	size := int32(n)
	rs.Spec.Replicas = &size
	rsClient := r.opts.Client.AppsV1().ReplicaSets(r.opts.Namespace)
	made, err := rsClient.Create(ctx, &rs, metav1.CreateOptions{FieldManager: FieldManager})
	if apierrors.IsAlreadyExists(err) {
		return false, notOurs(rsClient.Get(ctx, rs.Name, metav1.GetOptions{}))
	}
	if err != nil {
		return false, fmt.Errorf("create replicaset %s: %w", rs.Name, err)
	}
	if err := r.applyService(ctx, t, made); err != nil {
		return false, err
	}
	r.log.Info("replicaset created", "replicaset", rs.Name, "size", n)
	return true, nil
}

// resize sets a ReplicaSet's size through its scale subresource to
// size(current), retrying on conflicts with other writers.
func (r *Runtime) resize(ctx context.Context, name string, size func(current int32) int32) error {
	rsClient := r.opts.Client.AppsV1().ReplicaSets(r.opts.Namespace)
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		sc, err := rsClient.GetScale(ctx, name, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("read scale of replicaset %s: %w", name, err)
		}
		want := size(sc.Spec.Replicas)
		if sc.Spec.Replicas == want {
			return nil
		}
		next := &autoscalingv1.Scale{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: r.opts.Namespace, ResourceVersion: sc.ResourceVersion},
			Spec:       autoscalingv1.ScaleSpec{Replicas: want},
		}
		_, err = rsClient.UpdateScale(ctx, name, next, metav1.UpdateOptions{FieldManager: FieldManager})
		return err
	})
}

// MarkDraining annotates the pod as draining and gives it the lowest
// deletion cost, so a scale-down of its ReplicaSet (Remove's, or anyone
// else's) takes it first. The mark is on the pod: it survives a restart
// of skiff.
func (r *Runtime) MarkDraining(ctx context.Context, app, id string) error {
	if err := r.ready(); err != nil {
		return fmt.Errorf("drain instance %s: %w", id, err)
	}
	p, err := r.podOf(app, id)
	if err != nil {
		return fmt.Errorf("drain instance %s: %w", id, err)
	}
	if p.Annotations[AnnotationDraining] == "true" && p.Annotations[AnnotationDeletionCost] == drainingCost {
		return nil
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{AnnotationDraining: "true", AnnotationDeletionCost: drainingCost},
	}})
	// A merge patch touches only these two annotations, whoever owns the
	// rest of the pod.
	_, err = r.opts.Client.CoreV1().Pods(r.opts.Namespace).Patch(ctx, id, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("drain instance %s of %s: %w", id, app, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("drain instance %s of %s: %w", id, app, err)
	}
	r.awaitCache(ctx, func() bool {
		p, err := r.pods.Get(id)
		return err != nil || p.Annotations[AnnotationDraining] == "true"
	})
	return nil
}

// Remove scales the instance's ReplicaSet down by one so that exactly
// that pod leaves. The pod has the lowest deletion cost (MarkDraining,
// done here too if the caller did not), so the ReplicaSet controller
// picks it unless another pod ranks below it (unscheduled, pending or
// not ready: no traffic); in that case, or if the controller has not
// acted within RemoveWait, the pod is deleted directly and the
// ReplicaSet replaces what it deleted instead. Either way the pod leaves
// and the set's size drops by one.
func (r *Runtime) Remove(ctx context.Context, app, id string) error {
	if err := r.MarkDraining(ctx, app, id); err != nil {
		return fmt.Errorf("remove instance %s: %w", id, err)
	}
	p, err := r.podOf(app, id)
	if err != nil {
		return fmt.Errorf("remove instance %s: %w", id, err)
	}
	owner := metav1.GetControllerOf(p)
	if owner == nil || owner.Kind != "ReplicaSet" {
		return fmt.Errorf("remove instance %s of %s: the pod has no ReplicaSet owning it", id, app)
	}
	var target int32
	if err := r.resize(ctx, owner.Name, func(cur int32) int32 { target = max(0, cur-1); return target }); err != nil {
		return fmt.Errorf("remove instance %s of %s: %w", id, app, err)
	}
	podClient := r.opts.Client.CoreV1().Pods(r.opts.Namespace)
	deadline := time.Now().Add(r.opts.RemoveWait)
	for {
		cur, err := podClient.Get(ctx, id, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && cur.DeletionTimestamp != nil) {
			break
		}
		if err != nil {
			return fmt.Errorf("remove instance %s of %s: %w", id, app, err)
		}
		if cached, err := r.pods.Get(id); apierrors.IsNotFound(err) || (err == nil && cached.DeletionTimestamp != nil) {
			// The ReplicaSet deleted this very pod after the read above.
			break
		}
		if r.activePods(p.Labels) <= int(target) || time.Now().After(deadline) {
			// The ReplicaSet deleted another pod, or has not acted yet:
			// delete this one. If it had not acted, this deletion is the
			// scale-down; if it had, it replaces the pod it chose.
			err := podClient.Delete(ctx, id, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &p.UID}})
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("remove instance %s of %s: delete pod: %w", id, app, err)
			}
			r.log.Info("deleted pod the replicaset did not pick", "app", app, "pod", id)
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove instance %s of %s: %w", id, app, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	r.awaitCache(ctx, func() bool {
		p, err := r.pods.Get(id)
		return err != nil || p.DeletionTimestamp != nil
	})
	return nil
}

// activePods counts, in the cache, the pods of one release that are
// neither terminating nor finished: what the ReplicaSet controller counts
// against its size.
func (r *Runtime) activePods(podLabels map[string]string) int {
	pods, err := r.pods.List(labels.SelectorFromSet(labels.Set{LabelApp: podLabels[LabelApp], LabelRelease: podLabels[LabelRelease]}))
	if err != nil {
		return -1
	}
	n := 0
	for _, p := range pods {
		if _, ok := PodInstance(p); ok {
			n++
		}
	}
	return n
}

// DeleteSet deletes the release's ReplicaSet, its Service and its pods,
// and the app's PodDisruptionBudget once no ReplicaSet of the app
// remains.
func (r *Runtime) DeleteSet(ctx context.Context, app string, release int) error {
	if err := r.ready(); err != nil {
		return fmt.Errorf("delete release %d of %s: %w", release, app, err)
	}
	name := SetName(app, release)
	ns := r.opts.Namespace
	bg := metav1.DeletePropagationBackground
	err := r.opts.Client.AppsV1().ReplicaSets(ns).Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete replicaset %s: %w", name, err)
	}
	if err := r.deleteService(ctx, app, release); err != nil {
		return err
	}
	// The garbage collector would delete the pods too, later; deleting
	// them now frees their resources at once.
	sel := labels.SelectorFromSet(setLabels(app, release)).String() + "," + LabelManagedBy + "=" + ManagedBy
	if err := r.opts.Client.CoreV1().Pods(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: sel}); err != nil {
		return fmt.Errorf("delete pods of %s: %w", name, err)
	}
	left, err := r.opts.Client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{LabelApp: app, LabelManagedBy: ManagedBy}).String(),
	})
	if err != nil {
		return fmt.Errorf("list replicasets of %s: %w", app, err)
	}
	remaining := 0
	for _, rs := range left.Items {
		if rs.DeletionTimestamp == nil {
			remaining++
		}
	}
	if remaining == 0 {
		pdbs := r.opts.Client.PolicyV1().PodDisruptionBudgets(ns)
		pdb, err := pdbs.Get(ctx, app, metav1.GetOptions{})
		if err == nil && pdb.Labels[LabelManagedBy] == ManagedBy {
			err = pdbs.Delete(ctx, app, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &pdb.UID}})
		}
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete poddisruptionbudget %s: %w", app, err)
		}
	}
	r.awaitCache(ctx, func() bool { _, err := r.rsets.Get(name); return apierrors.IsNotFound(err) })
	return nil
}

// notOurs turns a Get of an object skiff is about to create into an
// error when an object of that name exists that skiff does not manage:
// skiff never takes over what others made.
func notOurs[T metav1.Object](obj T, err error) error {
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if obj.GetLabels()[LabelManagedBy] != ManagedBy {
		return fmt.Errorf("%w: %s/%s exists and is not labelled %s=%s; rename or remove it, or give skiff a namespace of its own",
			ErrNotOurs, obj.GetNamespace(), obj.GetName(), LabelManagedBy, ManagedBy)
	}
	return nil
}
