package kubernetes

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/kubetest"
)

// leaveBound is how soon the pods of a lost node must stop being ready
// instances: the node informer's watch latency, not the pod garbage
// collector's minute.
const leaveBound = 3 * time.Second

func TestNodeLost(t *testing.T) {
	indexer := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})
	for _, n := range []*corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "up"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "down"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionUnknown}}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "silent"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "leaving", DeletionTimestamp: &metav1.Time{Time: time.Unix(1_800_000_000, 0)}},
			Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}},
	} {
		slim, _ := slimNode(n)
		if err := indexer.Add(slim); err != nil {
			t.Fatal(err)
		}
	}
	nodes := corelisters.NewNodeLister(indexer)
	on := func(node string, edits ...func(*corev1.Pod)) *corev1.Pod {
		return testPod(func(p *corev1.Pod) {
			running(p)
			p.Spec.NodeName = node
			for _, e := range edits {
				e(p)
			}
		})
	}
	draining := func(p *corev1.Pod) { p.Annotations = map[string]string{AnnotationDraining: "true"} }
	for _, tc := range []struct {
		name   string
		nodes  corelisters.NodeLister
		pod    *corev1.Pod
		state  instance.State
		saying string
	}{
		{"on a ready node", nodes, on("up"), instance.Ready, ""},
		{"on a node that stopped reporting", nodes, on("down"), instance.Unready, "node down is not Ready"},
		{"on a node with no conditions yet", nodes, on("silent"), instance.Unready, "node silent is not Ready"},
		{"on a deleted node", nodes, on("gone"), instance.Unready, "node gone is gone"},
		{"on a node being deleted", nodes, on("leaving"), instance.Unready, "node leaving is being deleted"},
		{"draining on a deleted node", nodes, on("gone", draining), instance.Draining, "draining"},
		{"not yet scheduled", nodes, on(""), instance.Ready, ""},
		// Without the right to watch nodes, pod readiness alone counts.
		{"nodes not watched", nil, on("gone"), instance.Ready, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, ok := PodInstance(tc.pod)
			if !ok {
				t.Fatal("PodInstance dropped a running pod")
			}
			in = onLostNode(in, nodeLost(tc.nodes, tc.pod))
			if in.State != tc.state || !strings.Contains(in.Message, tc.saying) {
				t.Errorf("state %s %q, want %s saying %q", in.State, in.Message, tc.state, tc.saying)
			}
		})
	}
}

// A node that disappears takes its pods out of the ready instances at
// once, long before the pod garbage collector deletes them; the app's
// watchers hear of it; the ReplicaSet then makes new pods on the
// remaining nodes and Sets follows.
//
// Not parallel: the other tests' pods on the lost node would turn
// unready under them.
//
// A node whose Ready condition turns False is not tested against the
// cluster: kwok's node stage sets it True again within 200ms of an
// update through the status subresource. TestNodeLost covers what such
// a node's pods report.
func TestNodeDeletedPodsLeaveAtOnce(t *testing.T) {
	e := newEnv(t)
	set := e.running("game", 1, 3)
	lost := e.pod(set.Instances[0].ID).Spec.NodeName
	onLost := e.onNode(set, lost)
	woken := e.wakes("game")

	start := time.Now()
	e.c.DeleteNode(t, lost)
	left := e.awaitLeft("game", onLost, "is gone")
	if woken() == 0 {
		t.Error("the app's watchers were not called when the node holding its pods was deleted")
	}
	t.Logf("pods of deleted node %s (%v) unready %s after the deletion", lost, onLost, left.Round(100*time.Microsecond))

	// The pod garbage collector looks for pods of a node that is gone
	// every 20s and waits out a 40s quarantine before it deletes them.
	kubetest.Await(t, 3*time.Minute, "pods of the lost node replaced", func() error {
		sets, err := e.rt.Sets(e.ctx(), "game")
		if err != nil {
			return err
		}
		if len(sets) != 1 || sets[0].Ready() != 3 || len(sets[0].Instances) != 3 {
			return fmt.Errorf("sets: %+v", sets)
		}
		for _, in := range sets[0].Instances {
			if slices.Contains(onLost, in.ID) {
				return fmt.Errorf("%s of the lost node %s is still reported", in.ID, lost)
			}
			if node := e.pod(in.ID).Spec.NodeName; node == lost {
				return fmt.Errorf("%s is on the lost node", in.ID)
			}
		}
		return nil
	})
	t.Logf("pods of %s replaced on other nodes %s after the node was deleted", lost, time.Since(start).Round(time.Second))
}

// onNode lists the set's instances whose pods run on node.
func (e *testEnv) onNode(set instance.Set, node string) []string {
	e.t.Helper()
	var out []string
	for _, in := range set.Instances {
		if e.pod(in.ID).Spec.NodeName == node {
			out = append(out, in.ID)
		}
	}
	return out
}

// wakes counts, from now on, the calls of the runtime's watchers for
// app.
func (e *testEnv) wakes(app string) func() int {
	var mu sync.Mutex
	n := 0
	e.rt.Watch(func(a string) {
		if a == app {
			mu.Lock()
			n++
			mu.Unlock()
		}
	})
	return func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// awaitLeft waits, within leaveBound, until the instances ids of app are
// unready with a message saying why their node cannot serve them, and
// every other instance is still ready; it returns how long that took.
func (e *testEnv) awaitLeft(app string, ids []string, why string) time.Duration {
	e.t.Helper()
	start := time.Now()
	kubetest.Await(e.t, leaveBound, fmt.Sprintf("%v of %s unready", ids, app), func() error {
		sets, err := e.rt.Sets(e.ctx(), app)
		if err != nil {
			return err
		}
		for _, s := range sets {
			for _, in := range s.Instances {
				lost := slices.Contains(ids, in.ID)
				if lost && (in.State != instance.Unready || !strings.Contains(in.Message, why)) {
					return fmt.Errorf("%s is %s %q", in.ID, in.State, in.Message)
				}
				if !lost && in.State != instance.Ready {
					return fmt.Errorf("%s, on a node that serves, is %s %q", in.ID, in.State, in.Message)
				}
			}
		}
		return nil
	})
	return time.Since(start)
}

// warnings is a log handler that keeps the warnings logged through it,
// each as its message followed by its attributes.
type warnings struct {
	mu   sync.Mutex
	said []string
}

func (w *warnings) Enabled(context.Context, slog.Level) bool { return true }

func (w *warnings) Handle(_ context.Context, r slog.Record) error {
	if r.Level != slog.LevelWarn {
		return nil
	}
	line := r.Message
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	w.mu.Lock()
	defer w.mu.Unlock()
	w.said = append(w.said, line)
	return nil
}

func (w *warnings) WithAttrs([]slog.Attr) slog.Handler { return w }
func (w *warnings) WithGroup(string) slog.Handler      { return w }

func (w *warnings) all() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.said)
}

// installedAs applies skiff kube install's objects to a new namespace,
// without its ClusterRole and binding unless nodes is true, and returns
// the namespace and a REST config acting as the install's service
// account: the identity the control plane runs as.
func installedAs(t *testing.T, c *kubetest.Cluster, nodes bool) (string, *rest.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ns := fmt.Sprintf("skiff-nodes-%t-%d", nodes, time.Now().UnixNano()%1e6)
	objs, err := InstallObjects(InstallOptions{Namespace: ns, Image: "registry.example/skiff:1", EdgeService: "ClusterIP"})
	if err != nil {
		t.Fatal(err)
	}
	if !nodes {
		objs = slices.DeleteFunc(objs, func(o *unstructured.Unstructured) bool {
			return strings.HasPrefix(o.GetKind(), "Cluster")
		})
	}
	if err := Apply(ctx, dyn, objs, func(string) {}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := Delete(ctx, dyn, objs, func(string) {}); err != nil {
			t.Errorf("uninstall %s: %v", ns, err)
		}
	})
	cfg := rest.CopyConfig(c.Config)
	cfg.Impersonate = rest.ImpersonationConfig{
		UserName: "system:serviceaccount:" + ns + ":" + installName,
		Groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
	}
	return ns, cfg
}

// With what skiff kube install grants, the runtime watches nodes and
// says nothing about them. Without its ClusterRole (a namespace-only
// setup) the runtime warns once, saying what is lost and how to grant
// it, and goes on with pod readiness alone.
func TestNodeWatchNeedsItsClusterRole(t *testing.T) {
	t.Parallel()
	c := kubetest.Require(t)
	for _, tc := range []struct {
		name     string
		nodes    bool
		warnings int
	}{
		{"installed", true, 0},
		{"namespace only", false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ns, cfg := installedAs(t, c, tc.nodes)
			var warned warnings
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			rt, err := Connect(ctx, cfg, Options{Namespace: ns, Logger: slog.New(&warned)})
			if err != nil {
				t.Fatalf("the runtime as the install's service account: %v", err)
			}
			t.Cleanup(rt.Close)
			if got := rt.nodes != nil; got != tc.nodes {
				t.Errorf("watching nodes: %v, want %v", got, tc.nodes)
			}
			e := &testEnv{t: t, c: c, ns: ns, rt: rt}
			e.running("solo", 1, 1)

			said := warned.all()
			if len(said) != tc.warnings {
				t.Fatalf("%d warnings, want %d: %q", len(said), tc.warnings, said)
			}
			if tc.warnings > 0 {
				for _, w := range []string{"nodes", "ClusterRole", "skiff kube install", "forbidden"} {
					if !strings.Contains(said[0], w) {
						t.Errorf("the warning does not say %q (what is lost, why and how to grant it): %s", w, said[0])
					}
				}
				t.Logf("warned: %s", said[0])
			}
		})
	}
}
