package kubernetes

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiff-sh/skiff/internal/instance"
)

// leavingCost marks the pods a scale-down is to take: below every pod
// that stays, above a draining one, which leaves first of all.
var leavingCost = strconv.Itoa(math.MinInt32 + 1)

// markLeaving prepares a scale-down of t's release to n pods: it gives
// the pods that are to leave leavingCost, so the ReplicaSet controller
// takes exactly them, and the set shrinks as on every runtime: draining
// pods first, then pods that are not ready, then the newest. Without the
// mark the controller would pick among pods of about the same age at
// random.
func (r *Runtime) markLeaving(ctx context.Context, t instance.Template, n int) error {
	pods, err := r.pods.List(labels.SelectorFromSet(setLabels(t.App, t.Release)))
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	type active struct {
		pod *corev1.Pod
		in  instance.Instance
	}
	var as []active
	for _, p := range pods {
		if in, ok := PodInstance(p); ok {
			as = append(as, active{p, in})
		}
	}
	if len(as) <= n {
		return nil
	}
	rank := func(in instance.Instance) int {
		switch in.State {
		case instance.Draining:
			return 0
		case instance.Ready:
			return 2
		}
		return 1
	}
	slices.SortFunc(as, func(a, b active) int {
		if c := cmp.Compare(rank(a.in), rank(b.in)); c != 0 {
			return c
		}
		if c := b.pod.CreationTimestamp.Compare(a.pod.CreationTimestamp.Time); c != 0 {
			return c
		}
		return cmp.Compare(b.pod.Name, a.pod.Name)
	})
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{AnnotationDeletionCost: leavingCost},
	}})
	for _, a := range as[:len(as)-n] {
		if c := a.pod.Annotations[AnnotationDeletionCost]; c == drainingCost || c == leavingCost {
			continue
		}
		_, err := r.opts.Client.CoreV1().Pods(r.opts.Namespace).Patch(ctx, a.pod.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("mark pod %s to leave: %w", a.pod.Name, err)
		}
	}
	return nil
}
