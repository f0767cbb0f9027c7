package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/kubetest"
	"github.com/skiff-sh/skiff/internal/runtime/kubernetes"
)

// edgeProbe sends requests to a server's edge and compares who answers
// with the pods the cluster runs. Pods answer "release N pod NAME".
type edgeProbe struct {
	addr string
	c    *kubetest.Cluster
	ns   string
	http *http.Client
}

// get sends GET / for host and returns the answer of a 200, or an error.
func (e *edgeProbe) get(host string) (string, error) {
	req, err := http.NewRequest(http.MethodGet, "http://"+e.addr+"/", nil)
	if err != nil {
		return "", err
	}
	req.Host = host
	res, err := e.http.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return "", err
	}
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s: %q", host, res.Status, b)
	}
	return string(b), nil
}

// round sends n requests for host, one after another, and counts the
// answers; the first failure ends it.
func (e *edgeProbe) round(host string, n int) (map[string]int, error) {
	counts := map[string]int{}
	for range n {
		a, err := e.get(host)
		if err != nil {
			return counts, err
		}
		counts[a]++
	}
	return counts, nil
}

// parseAnswer splits "release N pod NAME".
func parseAnswer(a string) (release int, pod string, ok bool) {
	var n int
	if _, err := fmt.Sscanf(a, "release %d pod %s", &n, &pod); err != nil {
		return 0, "", false
	}
	return n, pod, true
}

// byRelease sums answers by release; unparsable ones count as release -1.
func byRelease(counts map[string]int) map[int]int {
	by := map[int]int{}
	for a, n := range counts {
		rel, _, ok := parseAnswer(a)
		if !ok {
			rel = -1
		}
		by[rel] += n
	}
	return by
}

// pods lists release's pods of app that are not being deleted, by name.
func (e *edgeProbe) pods(t *testing.T, app string, release int) map[string]*corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sel := fmt.Sprintf("%s=%s,%s=%d", kubernetes.LabelApp, app, kubernetes.LabelRelease, release)
	list, err := e.c.Client.CoreV1().Pods(e.ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		t.Fatalf("pods of %s release %d: %v", app, release, err)
	}
	m := map[string]*corev1.Pod{}
	for i := range list.Items {
		if p := &list.Items[i]; p.DeletionTimestamp == nil {
			m[p.Name] = p
		}
	}
	return m
}

// appSpec is the spec of an image app with 3 replicas, at image tag tag,
// followed by extra lines.
func appSpec(app string, tag int, extra string) string {
	return fmt.Sprintf("name: %s\nimage: %s\nport: 8080\nreplicas: 3\nhealth: {path: /healthz}\n%s", app, testImage(app, tag), extra)
}

// deployTwo deploys image tag 1 of app and waits until it completed,
// then deploys tag 2, and returns both releases' numbers.
func deployTwo(t *testing.T, cl *client.Client, app, extra string) (first, second int) {
	t.Helper()
	first = deploySpec(t, cl, appSpec(app, 1, extra)).Number
	mustComplete(t, cl, app, first)
	return first, deploySpec(t, cl, appSpec(app, 2, extra)).Number
}

// mustComplete waits for release n of app to finish and fails t unless
// it completed.
func mustComplete(t *testing.T, cl *client.Client, app string, n int) {
	t.Helper()
	if got := awaitRelease(t, cl, app, n); got.Status != "complete" {
		t.Fatalf("release %d of %s is %s: %s", n, app, got.Status, got.Message)
	}
}

// mustBe fails t unless release n of app is in status now.
func mustBe(t *testing.T, cl *client.Client, app string, n int, status string) {
	t.Helper()
	rel, err := cl.Release(context.Background(), app, n)
	if err != nil || rel.Status != status {
		t.Fatalf("release %d of %s is %q (%s), %v; want it %s", n, app, rel.Status, rel.Message, err, status)
	}
}

// lostWithNode reports whether the pod garbage collector deleted p
// because its node was gone.
func lostWithNode(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		// The reason the pod garbage collector gives; Kubernetes has no
		// constant for it.
		if c.Type == corev1.DisruptionTarget && c.Reason == "DeletionByPodGC" {
			return true
		}
	}
	return false
}

// checkOnly says why counts are not all answers of release's pods of
// app, or returns which of those pods answered.
func (e *edgeProbe) checkOnly(t *testing.T, counts map[string]int, app string, release int) (map[string]bool, error) {
	live := e.pods(t, app, release)
	seen := map[string]bool{}
	for a := range counts {
		rel, pod, ok := parseAnswer(a)
		if !ok || rel != release || live[pod] == nil {
			return nil, fmt.Errorf("answer %q is not from a live pod of release %d (answers %v)", a, release, counts)
		}
		seen[pod] = true
	}
	return seen, nil
}

// expectOnly sends n requests for host at once and fails t unless release's
// pods of app answer every one.
func (e *edgeProbe) expectOnly(t *testing.T, host, app string, release, n int) {
	t.Helper()
	counts, err := e.round(host, n)
	if err != nil {
		t.Fatalf("only release %d on %s: %v (answers so far %v)", release, host, err, counts)
	}
	if _, err := e.checkOnly(t, counts, app, release); err != nil {
		t.Fatalf("only release %d on %s: %v", release, host, err)
	}
}

// servedAlone checks that host is answered only by release's pods of app
// at once (a finished rollout serves nothing else), then waits until
// each of its n pods answered.
func (e *edgeProbe) servedAlone(t *testing.T, host, app string, release, n int) {
	t.Helper()
	e.expectOnly(t, host, app, release, 10*n)
	e.awaitServedBy(t, host, app, release, n)
}

// awaitServedBy waits until the edge answers host from release's pods of
// app alone, and from each of them, and there are n.
func (e *edgeProbe) awaitServedBy(t *testing.T, host, app string, release, n int) {
	t.Helper()
	start := time.Now()
	kubetest.Await(t, time.Minute, fmt.Sprintf("%s answered by each of the %d pods of %s release %d alone", host, n, app, release), func() error {
		counts, err := e.round(host, 20*n)
		if err != nil {
			return err
		}
		seen, err := e.checkOnly(t, counts, app, release)
		if err != nil {
			return err
		}
		if live := e.pods(t, app, release); len(live) != n || len(seen) != n {
			return fmt.Errorf("%d live pods, %d answered: %v", len(live), len(seen), counts)
		}
		return nil
	})
	t.Logf("%s served by the %d pods of release %d (awaited %s)", host, n, release, time.Since(start).Round(time.Millisecond))
}

// awaitSizes waits until app's ReplicaSets are exactly want's releases,
// each with that many replicas wanted and ready.
func (e *edgeProbe) awaitSizes(t *testing.T, app string, want map[int]int) {
	t.Helper()
	kubetest.Await(t, 90*time.Second, fmt.Sprintf("replicasets of %s sized %v (release: pods)", app, want), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		rss, err := e.c.Client.AppsV1().ReplicaSets(e.ns).List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelApp + "=" + app})
		if err != nil {
			return err
		}
		var got []string
		for _, rs := range rss.Items {
			got = append(got, fmt.Sprintf("%s %d/%d ready", rs.Name, rs.Status.ReadyReplicas, *rs.Spec.Replicas))
		}
		if len(rss.Items) != len(want) {
			return fmt.Errorf("replicasets %v", got)
		}
		for rel, n := range want {
			i := slices.IndexFunc(rss.Items, func(rs appsv1.ReplicaSet) bool { return rs.Name == kubernetes.SetName(app, rel) })
			if i < 0 || *rss.Items[i].Spec.Replicas != int32(n) || rss.Items[i].Status.ReadyReplicas != int32(n) {
				return fmt.Errorf("replicasets %v", got)
			}
		}
		return nil
	})
}

// logLost logs how app's instances on a lost node look to the
// controller: until the pod garbage collector deletes them they remain
// Ready in the API, with no kubelet left to say otherwise.
func (e *edgeProbe) logLost(t *testing.T, cl *client.Client, app string, pods map[string]*corev1.Pod, node string) {
	t.Helper()
	st, err := cl.App(context.Background(), app)
	if err != nil {
		t.Fatalf("status of %s: %v", app, err)
	}
	for _, set := range st.Sets {
		for _, in := range set.Instances {
			if p := pods[in.ID]; p != nil && p.Spec.NodeName == node {
				t.Logf("instance %s on lost node %s: %s at %s", in.ID, node, in.State, in.Endpoint)
			}
		}
	}
}

// awaitInstancesAtPods waits until app's instances, as the controller
// sees and routes them, are exactly release's live pods, each ready at
// its pod IP and port 8080.
func (e *edgeProbe) awaitInstancesAtPods(t *testing.T, cl *client.Client, app string, release int) {
	t.Helper()
	kubetest.Await(t, 30*time.Second, app+"'s instances at its pods' addresses", func() error {
		var want []string
		for _, p := range e.pods(t, app, release) {
			want = append(want, p.Status.PodIP+":8080 ready")
		}
		st, err := cl.App(context.Background(), app)
		if err != nil {
			return err
		}
		var got []string
		for _, set := range st.Sets {
			for _, in := range set.Instances {
				got = append(got, in.Endpoint+" "+string(in.State))
			}
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("instances %v, want %v", got, want)
		}
		return nil
	})
}
