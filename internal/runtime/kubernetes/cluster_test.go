package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/kubetest"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// testEnv is one test's runtime over a namespace of its own on the shared
// cluster.
type testEnv struct {
	t  *testing.T
	c  *kubetest.Cluster
	ns string
	rt *Runtime
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	return newEnvWith(t, Options{})
}

// newEnvWith is newEnv with o's options besides the client, namespace,
// wait and logger.
func newEnvWith(t *testing.T, o Options) *testEnv {
	t.Helper()
	c := kubetest.Require(t)
	ns := c.Namespace(t)
	return &testEnv{t: t, c: c, ns: ns, rt: startRuntime(t, c, ns, o)}
}

// startRuntime starts a runtime on namespace ns of c with o's options
// besides the client, namespace, wait and logger; it closes when t ends.
func startRuntime(t *testing.T, c *kubetest.Cluster, ns string, o Options) *Runtime {
	t.Helper()
	o.Client, o.Namespace, o.RemoveWait, o.Logger = c.Client, ns, 5*time.Second, slog.New(slog.DiscardHandler)
	rt, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	return rt
}

func appTemplate(app string, release int) instance.Template {
	return instance.Template{
		App: app, Release: release, Image: "registry.example/" + app + ":" + fmt.Sprint(release), Port: 8080,
		Health: instance.Health{Path: "/healthz"},
	}
}

func (e *testEnv) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	e.t.Cleanup(cancel)
	return ctx
}

// awaitSet waits until the app's set of release has size n and n ready
// instances with endpoints, and returns it.
func (e *testEnv) awaitSet(app string, release, n int, timeout time.Duration) instance.Set {
	e.t.Helper()
	var got instance.Set
	kubetest.Await(e.t, timeout, fmt.Sprintf("release %d of %s at %d ready", release, app, n), func() error {
		sets, err := e.rt.Sets(e.ctx(), app)
		if err != nil {
			return err
		}
		for _, s := range sets {
			if s.Release != release {
				continue
			}
			got = s
			if s.Size == n && s.Ready() == n && len(s.Instances) == n {
				return nil
			}
			return fmt.Errorf("set: %+v", s)
		}
		return fmt.Errorf("no set in %+v", sets)
	})
	for _, in := range got.Instances {
		if in.Endpoint == "" {
			e.t.Errorf("ready instance %s has no endpoint", in.ID)
		}
	}
	return got
}

// running scales release of app to n and waits until all are ready.
func (e *testEnv) running(app string, release, n int) instance.Set {
	e.t.Helper()
	if err := e.rt.Scale(e.ctx(), appTemplate(app, release), n); err != nil {
		e.t.Fatal(err)
	}
	return e.awaitSet(app, release, n, time.Minute)
}

func (e *testEnv) pod(name string) *corev1.Pod {
	e.t.Helper()
	p, err := e.c.Client.CoreV1().Pods(e.ns).Get(e.ctx(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatalf("get pod %s: %v", name, err)
	}
	return p
}

func ids(s instance.Set) []string {
	var out []string
	for _, in := range s.Instances {
		out = append(out, in.ID)
	}
	return out
}

func TestScaleUpAndDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var mu sync.Mutex
	woken := map[string]int{}
	e.rt.Watch(func(app string) { mu.Lock(); woken[app]++; mu.Unlock() })

	tmpl := appTemplate("web", 1)
	if err := e.rt.Scale(e.ctx(), tmpl, 3); err != nil {
		t.Fatal(err)
	}
	set := e.awaitSet("web", 1, 3, time.Minute)
	nodes := map[string]bool{}
	for _, in := range set.Instances {
		p := e.pod(in.ID)
		if want := p.Status.PodIP + ":8080"; in.Endpoint != want {
			t.Errorf("instance %s endpoint %q, want the pod IP and port %q", in.ID, in.Endpoint, want)
		}
		if in.App != "web" || in.Release != 1 {
			t.Errorf("instance %s reports app %q release %d", in.ID, in.App, in.Release)
		}
		nodes[p.Spec.NodeName] = true
	}
	if len(nodes) < 2 {
		t.Errorf("3 pods landed on %d node(s) %v; the topology spread should use more", len(nodes), nodes)
	}
	apps, err := e.rt.Apps(e.ctx())
	if err != nil || !slices.Equal(apps, []string{"web"}) {
		t.Errorf("Apps = %v, %v; want [web]", apps, err)
	}
	mu.Lock()
	if woken["web"] == 0 {
		t.Error("Watch was never called for web")
	}
	mu.Unlock()

	pdb, err := e.c.Client.PolicyV1().PodDisruptionBudgets(e.ns).Get(e.ctx(), "web", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the app's PodDisruptionBudget: %v", err)
	}
	if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
		t.Errorf("budget allows %v unavailable, want 1", pdb.Spec.MaxUnavailable)
	}

	if err := e.rt.Scale(e.ctx(), tmpl, 1); err != nil {
		t.Fatal(err)
	}
	e.awaitSet("web", 1, 1, time.Minute)

	// The size lives in the scale subresource: sizing again with the same
	// template applies nothing and the template's owner is skiff's apply
	// or create, never a fight over replicas.
	rs, err := e.c.Client.AppsV1().ReplicaSets(e.ns).Get(e.ctx(), SetName("web", 1), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *rs.Spec.Replicas != 1 {
		t.Errorf("replicaset has %d replicas, want 1", *rs.Spec.Replicas)
	}
	for _, mf := range rs.ManagedFields {
		if mf.Manager != FieldManager {
			continue
		}
		if mf.Operation == metav1.ManagedFieldsOperationApply && containsReplicas(mf.FieldsV1) {
			t.Errorf("skiff's apply owns spec.replicas: a later apply would reset the size")
		}
	}
}

func containsReplicas(f *metav1.FieldsV1) bool {
	if f == nil {
		return false
	}
	var m map[string]map[string]any
	if err := json.Unmarshal(f.Raw, &m); err != nil {
		return false
	}
	_, ok := m["f:spec"]["f:replicas"]
	return ok
}

// A template change (a newer skiff rendering differently) is applied
// without touching the size.
func TestTemplateChangeKeepsSize(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tmpl := appTemplate("api", 2)
	if err := e.rt.Scale(e.ctx(), tmpl, 2); err != nil {
		t.Fatal(err)
	}
	e.awaitSet("api", 2, 2, time.Minute)
	tmpl.Env = map[string]string{"FEATURE": "on"}
	if err := e.rt.Scale(e.ctx(), tmpl, 2); err != nil {
		t.Fatal(err)
	}
	rs, err := e.c.Client.AppsV1().ReplicaSets(e.ns).Get(e.ctx(), SetName("api", 2), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ReplicaSet(tmpl, RenderOptions{Namespace: e.ns})
	if rs.Annotations[AnnotationTemplateHash] != want.Annotations[AnnotationTemplateHash] {
		t.Errorf("template hash %s, want the new rendering's %s", rs.Annotations[AnnotationTemplateHash], want.Annotations[AnnotationTemplateHash])
	}
	if !slices.ContainsFunc(rs.Spec.Template.Spec.Containers[0].Env, func(v corev1.EnvVar) bool { return v.Name == "FEATURE" && v.Value == "on" }) {
		t.Error("the new env is not in the replicaset's template")
	}
	if *rs.Spec.Replicas != 2 {
		t.Errorf("applying the template changed the size to %d", *rs.Spec.Replicas)
	}
}

func TestMarkDrainingThenRemoveTakesThatPod(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	set := e.running("shop", 1, 3)
	// Not the newest nor the oldest: what the ReplicaSet would not pick by
	// itself.
	victim := set.Instances[1].ID
	others := slices.DeleteFunc(ids(set), func(id string) bool { return id == victim })

	if err := e.rt.MarkDraining(e.ctx(), "shop", victim); err != nil {
		t.Fatal(err)
	}
	sets, err := e.rt.Sets(e.ctx(), "shop")
	if err != nil {
		t.Fatal(err)
	}
	in, ok := findInstance(sets, victim)
	if !ok || in.State != instance.Draining {
		t.Fatalf("after MarkDraining Sets reports %s as %+v, want draining", victim, in)
	}
	if got := e.pod(victim).Annotations[AnnotationDeletionCost]; got != drainingCost {
		t.Errorf("draining pod's deletion cost is %q, want %s", got, drainingCost)
	}

	if err := e.rt.Remove(e.ctx(), "shop", victim); err != nil {
		t.Fatal(err)
	}
	after := e.awaitSet("shop", 1, 2, time.Minute)
	if got := ids(after); !slices.Equal(got, others) {
		t.Errorf("after removing %s the set holds %v, want exactly the others %v", victim, got, others)
	}
	p, err := e.c.Client.CoreV1().Pods(e.ns).Get(e.ctx(), victim, metav1.GetOptions{})
	if err == nil && p.DeletionTimestamp == nil {
		t.Errorf("pod %s still runs", victim)
	} else if err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	if err := e.rt.MarkDraining(e.ctx(), "shop", "shop-1-nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("MarkDraining of an unknown pod: %v, want ErrNotFound", err)
	}
}

func TestDeleteSetLeavesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.running("blog", 1, 2)
	e.running("blog", 2, 2)
	// Each release has its headless Service, named in its set.
	sets, err := e.rt.Sets(e.ctx(), "blog")
	if err != nil {
		t.Fatal(err)
	}
	for _, set := range sets {
		want := instance.Published{Service: ServiceName("blog", set.Release), Port: 8080}
		if set.Published == nil || *set.Published != want {
			t.Errorf("release %d publishes %+v, want %+v", set.Release, set.Published, want)
		}
		svc, err := e.c.Client.CoreV1().Services(e.ns).Get(e.ctx(), want.Service, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("service of release %d: %v", set.Release, err)
		}
		if svc.Spec.ClusterIP != corev1.ClusterIPNone || svc.Spec.Selector[LabelRelease] != fmt.Sprint(set.Release) {
			t.Errorf("service %s: cluster IP %q, selector %v; want headless, selecting release %d", svc.Name, svc.Spec.ClusterIP, svc.Spec.Selector, set.Release)
		}
	}

	if err := e.rt.DeleteSet(e.ctx(), "blog", 1); err != nil {
		t.Fatal(err)
	}
	sets, err = e.rt.Sets(e.ctx(), "blog")
	if err != nil || len(sets) != 1 || sets[0].Release != 2 {
		t.Fatalf("after deleting release 1, Sets = %+v, %v; want release 2 only", sets, err)
	}
	if _, err := e.c.Client.PolicyV1().PodDisruptionBudgets(e.ns).Get(e.ctx(), "blog", metav1.GetOptions{}); err != nil {
		t.Errorf("budget gone while release 2 still runs: %v", err)
	}

	if err := e.rt.DeleteSet(e.ctx(), "blog", 2); err != nil {
		t.Fatal(err)
	}
	if sets, err := e.rt.Sets(e.ctx(), "blog"); err != nil || len(sets) != 0 {
		t.Errorf("after deleting every set, Sets = %+v, %v", sets, err)
	}
	if apps, err := e.rt.Apps(e.ctx()); err != nil || len(apps) != 0 {
		t.Errorf("after deleting every set, Apps = %v, %v", apps, err)
	}
	kubetest.Await(t, time.Minute, "every object of blog gone", func() error {
		pods, err := e.c.Client.CoreV1().Pods(e.ns).List(e.ctx(), metav1.ListOptions{LabelSelector: LabelApp + "=blog"})
		if err != nil {
			return err
		}
		if len(pods.Items) > 0 {
			return fmt.Errorf("%d pods left", len(pods.Items))
		}
		rss, err := e.c.Client.AppsV1().ReplicaSets(e.ns).List(e.ctx(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(rss.Items) > 0 {
			return fmt.Errorf("%d replicasets left", len(rss.Items))
		}
		_, err = e.c.Client.PolicyV1().PodDisruptionBudgets(e.ns).Get(e.ctx(), "blog", metav1.GetOptions{})
		if !apierrors.IsNotFound(err) {
			return fmt.Errorf("budget: %v", err)
		}
		svcs, err := e.c.Client.CoreV1().Services(e.ns).List(e.ctx(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(svcs.Items) > 0 {
			return fmt.Errorf("%d services left, the first %s", len(svcs.Items), svcs.Items[0].Name)
		}
		return nil
	})
	// Deleting what is gone is not an error: the controller may retry.
	if err := e.rt.DeleteSet(e.ctx(), "blog", 2); err != nil {
		t.Errorf("deleting a deleted set: %v", err)
	}
}

func TestCommandOnlyAppIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tmpl := instance.Template{App: "script", Release: 1, Command: []string{"./run"}, Port: 8080}
	err := e.rt.Scale(e.ctx(), tmpl, 1)
	if !errors.Is(err, ErrCommandOnly) {
		t.Fatalf("Scale of a command-only app: %v, want ErrCommandOnly", err)
	}
	rss, err := e.c.Client.AppsV1().ReplicaSets(e.ns).List(e.ctx(), metav1.ListOptions{})
	if err != nil || len(rss.Items) != 0 {
		t.Errorf("a refused app left replicasets: %v, %v", rss, err)
	}
}

// An object of the same name that skiff did not make is never taken over.
func TestForeignObjectIsLeftAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	labels := map[string]string{"owner": "someone-else"}
	foreign := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: SetName("mine", 1), Namespace: e.ns, Labels: labels},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To[int32](0),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "x", Image: "registry.example/x:1"}}},
			},
		},
	}
	if _, err := e.c.Client.AppsV1().ReplicaSets(e.ns).Create(e.ctx(), foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := e.rt.Scale(e.ctx(), appTemplate("mine", 1), 2)
	if !errors.Is(err, ErrNotOurs) {
		t.Fatalf("Scale over a foreign replicaset: %v, want ErrNotOurs", err)
	}
	got, err := e.c.Client.AppsV1().ReplicaSets(e.ns).Get(e.ctx(), SetName("mine", 1), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *got.Spec.Replicas != 0 || got.Labels[LabelManagedBy] != "" {
		t.Errorf("the foreign replicaset was changed: replicas %d, labels %v", *got.Spec.Replicas, got.Labels)
	}
}

func findInstance(sets []instance.Set, id string) (instance.Instance, bool) {
	for _, s := range sets {
		for _, in := range s.Instances {
			if in.ID == id {
				return in, true
			}
		}
	}
	return instance.Instance{}, false
}

// When another pod ranks below the chosen one (here: not ready), the
// ReplicaSet deletes that one on the scale-down; Remove then deletes the
// chosen pod itself, and the ReplicaSet replaces the other. The chosen pod
// leaves all the same, and the set ends one smaller.
func TestRemoveWhenTheReplicaSetPicksAnother(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	set := e.running("cart", 1, 3)
	victim, unready := set.Instances[0].ID, set.Instances[1].ID

	// kwok leaves a Running pod's status alone, so this one stays unready.
	p := e.pod(unready)
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			p.Status.Conditions[i].Status = corev1.ConditionFalse
		}
	}
	if _, err := e.c.Client.CoreV1().Pods(e.ns).UpdateStatus(e.ctx(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.Await(t, 30*time.Second, unready+" unready in Sets", func() error {
		sets, err := e.rt.Sets(e.ctx(), "cart")
		if err != nil {
			return err
		}
		if in, _ := findInstance(sets, unready); in.State == instance.Ready {
			return fmt.Errorf("%s still ready", unready)
		}
		return nil
	})

	if err := e.rt.MarkDraining(e.ctx(), "cart", victim); err != nil {
		t.Fatal(err)
	}
	if err := e.rt.Remove(e.ctx(), "cart", victim); err != nil {
		t.Fatal(err)
	}
	after := e.awaitSet("cart", 1, 2, time.Minute)
	if slices.Contains(ids(after), victim) {
		t.Errorf("the removed pod %s is still in the set %v", victim, ids(after))
	}
	if slices.Contains(ids(after), unready) {
		t.Errorf("the unready pod %s is still in the set %v: the ReplicaSet did not pick it, so this test did not test the fallback", unready, ids(after))
	}
	kubetest.Await(t, 30*time.Second, victim+" deleted", func() error {
		p, err := e.c.Client.CoreV1().Pods(e.ns).Get(e.ctx(), victim, metav1.GetOptions{})
		if apierrors.IsNotFound(err) || (err == nil && p.DeletionTimestamp != nil) {
			return nil
		}
		return fmt.Errorf("pod %s: %v", victim, err)
	})
}
