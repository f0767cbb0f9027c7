package kubetest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// Inside the test's network namespace, every pod kwok runs answers at
// its pod IP and port until it is deleted or its node is lost.
func TestStandInsAnswerAtPodIPs(t *testing.T) {
	if !InNetNS(t) {
		return
	}
	c := Require(t)
	ns := c.Namespace(t)
	s := c.StartStandIns(t, ns, func(p *corev1.Pod) string { return "pod " + p.Name })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	nodes := c.Nodes()
	for i, name := range []string{"a", "b"} {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.PodSpec{
				NodeName: nodes[i],
				Containers: []corev1.Container{{
					Name: "web", Image: "registry.invalid/web:1",
					Ports: []corev1.ContainerPort{{ContainerPort: 8080}},
				}},
			},
		}
		if _, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create pod %s: %v", name, err)
		}
	}
	hc := &http.Client{Timeout: 2 * time.Second}
	get := func(url string) (string, error) {
		res, err := hc.Get(url)
		if err != nil {
			return "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return string(b), err
	}
	addrs := map[string]string{}
	Await(t, time.Minute, "pods a and b answering at their IPs", func() error {
		addrs = s.Answering()
		for _, name := range []string{"a", "b"} {
			addr := addrs[name]
			if addr == "" {
				return fmt.Errorf("no stand-in for pod %s yet: %v", name, s)
			}
			if got, err := get("http://" + addr + "/"); err != nil || got != "pod "+name {
				return fmt.Errorf("pod %s at %s answers %q, %v", name, addr, got, err)
			}
			if got, err := get("http://" + addr + "/healthz"); err != nil || got != "ok" {
				return fmt.Errorf("pod %s at %s: /healthz answers %q, %v", name, addr, got, err)
			}
		}
		return nil
	})

	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, "a", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	Await(t, time.Minute, "deleted pod a silent at "+addrs["a"], func() error {
		if got, err := get("http://" + addrs["a"] + "/"); err == nil {
			return fmt.Errorf("still answers %q", got)
		}
		return nil
	})

	s.StopNode(nodes[1])
	if got, err := get("http://" + addrs["b"] + "/"); err == nil {
		t.Errorf("pod b answers %q after its node %s was lost", got, nodes[1])
	}
	if n := len(s.Answering()); n != 0 {
		t.Errorf("%d stand-ins still answer: %v", n, s)
	}
}
