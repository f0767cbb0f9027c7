package kubetest

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

// A ReplicaSet with no Deployment above it: the controller manager
// creates its pods, the scheduler binds them to kwok's nodes, and kwok
// makes them Running and Ready with pod IPs.
func TestReplicaSetPodsRunOnKwokNodes(t *testing.T) {
	c := Require(t)
	ns := c.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	labels := map[string]string{"app": "web"}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To[int32](4),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "web", Image: "registry.invalid/web:1",
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				}}},
			},
		},
	}
	if _, err := c.Client.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create ReplicaSet: %v", err)
	}

	var pods []corev1.Pod
	Await(t, time.Minute, "4 pods Running and Ready", func() error {
		list, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return err
		}
		pods = list.Items
		if len(pods) != 4 || slices.ContainsFunc(pods, func(p corev1.Pod) bool { return !podReady(p) }) {
			return fmt.Errorf("pods: %s", describePods(pods))
		}
		return nil
	})

	ips := map[string]bool{}
	for _, p := range pods {
		if !slices.Contains(c.Nodes(), p.Spec.NodeName) {
			t.Errorf("pod %s is on %q, not one of the kwok nodes %v", p.Name, p.Spec.NodeName, c.Nodes())
		}
		addr, err := netip.ParseAddr(p.Status.PodIP)
		if err != nil || !netip.MustParsePrefix("10.244.0.0/16").Contains(addr) {
			t.Errorf("pod %s has IP %q, want one in the pod CIDR 10.244.0.0/16", p.Name, p.Status.PodIP)
		}
		if ips[p.Status.PodIP] {
			t.Errorf("pod IP %s is given twice", p.Status.PodIP)
		}
		ips[p.Status.PodIP] = true
	}
	Await(t, 30*time.Second, "the ReplicaSet to report 4 ready replicas", func() error {
		rs, err := c.Client.AppsV1().ReplicaSets(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return err
		}
		if rs.Status.ReadyReplicas != 4 {
			return fmt.Errorf("%d ready", rs.Status.ReadyReplicas)
		}
		return nil
	})
	t.Logf("cluster start-up took %s", StartupTime())
}

func podReady(p corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "" {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func describePods(pods []corev1.Pod) string {
	s := ""
	for _, p := range pods {
		s += p.Name + "@" + p.Spec.NodeName + ":" + string(p.Status.Phase) + "/" + p.Status.PodIP + " "
	}
	return s
}

func TestDeletedNodeComesBack(t *testing.T) {
	c := Require(t)
	t.Run("delete", func(t *testing.T) {
		c.DeleteNode(t, c.Nodes()[2])
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := c.Client.CoreV1().Nodes().Get(ctx, c.Nodes()[2], metav1.GetOptions{}); err == nil {
			t.Errorf("node %s still exists after DeleteNode", c.Nodes()[2])
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.nodesReady(ctx); err != nil {
		t.Errorf("after the deleting test ended: %v", err)
	}
}
