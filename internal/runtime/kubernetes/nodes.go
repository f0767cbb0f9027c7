package kubernetes

import (
	"context"
	"fmt"
	"slices"

	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/internal/instance"
)

// Why nodes are watched: when a node is deleted or stops reporting Ready,
// Kubernetes leaves its pods Ready until the pod garbage collector
// deletes them (about a minute after a deletion; a NotReady node's pods
// are marked by the node controller, or evicted only after their
// five-minute toleration). No kubelet is left to say otherwise, so the
// runtime looks at the node itself and stops reporting those pods ready
// at once, which takes them out of the edge.

// podNodeIndex indexes the pod cache by the node a pod is bound to.
const podNodeIndex = "node"

func indexPodByNode(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.NodeName == "" {
		return nil, nil
	}
	return []string{p.Spec.NodeName}, nil
}

// nodeVerbs are what the runtime needs on nodes, and all that skiff kube
// install grants on them.
var nodeVerbs = []string{"get", "list", "watch"}

// watchNodes starts a cache of the cluster's nodes when skiff may list
// and watch them. When it may not (credentials limited to the
// namespace), it logs once what is lost and how to grant it, and the
// runtime goes on with pod readiness alone: a node informer without the
// right would only fail, and log, again and again.
func (r *Runtime) watchNodes(ctx context.Context) error {
	if why, err := r.mayWatchNodes(ctx); err != nil {
		return err
	} else if why != "" {
		r.log.Warn("cannot watch the cluster's nodes: pods on a deleted or NotReady node keep receiving traffic until Kubernetes deletes them (about a minute); "+
			"grant get, list and watch on nodes with a ClusterRole bound to skiff's identity (skiff kube install does)", "reason", why)
		return nil
	}
	factory := informers.NewSharedInformerFactory(r.opts.Client, 0)
	inf := factory.Core().V1().Nodes().Informer()
	// A node's status carries its images and much else; only readiness
	// matters here, so that is all the cache keeps.
	if err := inf.SetTransform(slimNode); err != nil {
		return fmt.Errorf("watch nodes: %w", err)
	}
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		// A node that appears may be one the pod cache saw first.
		AddFunc: func(obj any) { r.nodeChanged(obj) },
		UpdateFunc: func(old, cur any) {
			// Heartbeats update every node every few seconds: only a
			// change of readiness changes what its pods report.
			if nodeReady(old) != nodeReady(cur) {
				r.nodeChanged(cur)
			}
		},
		DeleteFunc: func(obj any) { r.nodeChanged(obj) },
	})
	if err != nil {
		return fmt.Errorf("watch nodes: %w", err)
	}
	factory.Start(r.stop)
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		factory.Shutdown()
		return fmt.Errorf("kubernetes runtime: list nodes: %w", ctx.Err())
	}
	// Start publishes these to Sets under r.mu, when it marks the
	// runtime started.
	r.nodeFactory = factory
	r.nodes = factory.Core().V1().Nodes().Lister()
	return nil
}

// mayWatchNodes asks the API server whether skiff's identity may list
// and watch nodes, and returns "" when it may, else why not.
func (r *Runtime) mayWatchNodes(ctx context.Context) (string, error) {
	for _, verb := range []string{"list", "watch"} {
		review, err := r.opts.Client.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authzv1.SelfSubjectAccessReview{
			Spec: authzv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authzv1.ResourceAttributes{Verb: verb, Resource: "nodes"}},
		}, metav1.CreateOptions{})
		switch {
		case apierrors.IsForbidden(err):
			return fmt.Sprintf("may not even ask whether it may %s nodes: %v", verb, err), nil
		case err != nil:
			return "", fmt.Errorf("kubernetes runtime: ask whether skiff may %s nodes: %w", verb, err)
		case !review.Status.Allowed:
			why := verb + " nodes is forbidden to this identity"
			if review.Status.Reason != "" {
				why += ": " + review.Status.Reason
			}
			return why, nil
		}
	}
	return "", nil
}

// slimNode keeps of a node its identity and Ready condition.
func slimNode(obj any) (any, error) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return obj, nil
	}
	slim := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name: n.Name, UID: n.UID, ResourceVersion: n.ResourceVersion, DeletionTimestamp: n.DeletionTimestamp,
	}}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			slim.Status.Conditions = []corev1.NodeCondition{{Type: c.Type, Status: c.Status, Reason: c.Reason}}
		}
	}
	return slim, nil
}

func nodeReady(obj any) bool {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// nodeChanged tells the watchers about every app with a pod on the node,
// as a change of those pods would.
func (r *Runtime) nodeChanged(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	pods, err := r.podIndex.ByIndex(podNodeIndex, n.Name)
	if err != nil {
		r.log.Error("pods of a changed node", "node", n.Name, "err", err)
		return
	}
	var apps []string
	for _, obj := range pods {
		if p, ok := obj.(*corev1.Pod); ok && p.Labels[LabelApp] != "" && !slices.Contains(apps, p.Labels[LabelApp]) {
			apps = append(apps, p.Labels[LabelApp])
		}
	}
	for _, app := range apps {
		r.notify(app)
	}
}

// nodeLost says why a pod's node cannot serve it, or "" when it can or
// the runtime does not watch nodes.
func nodeLost(nodes corelisters.NodeLister, p *corev1.Pod) string {
	if nodes == nil || p.Spec.NodeName == "" {
		return ""
	}
	n, err := nodes.Get(p.Spec.NodeName)
	switch {
	case apierrors.IsNotFound(err):
		return "node " + p.Spec.NodeName + " is gone"
	case err != nil:
		return ""
	case n.DeletionTimestamp != nil:
		return "node " + p.Spec.NodeName + " is being deleted"
	case !nodeReady(n):
		return "node " + p.Spec.NodeName + " is not Ready"
	}
	return ""
}

// onLostNode marks an instance whose pod's node is gone or not Ready.
// Unready is the state for it: it takes no traffic, the rollout removes
// it before ready ones, and, unlike Gone, it is not final: a node that
// comes back Ready brings its pods back. A draining instance stays
// draining, which takes no traffic either and is the controller's own
// mark.
func onLostNode(in instance.Instance, why string) instance.Instance {
	if why == "" || in.State == instance.Draining {
		return in
	}
	in.State, in.Message = instance.Unready, why+": its pod gets no traffic until the node is Ready again or the pod is replaced"
	return in
}
