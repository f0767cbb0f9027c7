package kubetest

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A pod's log is read through kube-apiserver's pods/log, which reaches
// kwok's server as the node's kubelet: the lines written to the pod's
// file come back with their timestamps, and a follower sees a line
// appended later.
func TestPodLogThroughAPIServer(t *testing.T) {
	c := Require(t)
	ns := c.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	pod, err := c.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "talker"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "app", Image: "registry.invalid/talker:1",
		}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	log := c.ServePodLog(t, ns, pod.Name)
	first := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	log.Write(t, first, "hello", "world")

	Await(t, 30*time.Second, "pod running on a node", func() error {
		p, err := c.Client.CoreV1().Pods(ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("phase %s", p.Status.Phase)
		}
		return nil
	})
	var got string
	// kwok learns of the Logs object from its watch, a moment later.
	Await(t, 30*time.Second, "the pod's log through the API server", func() error {
		b, err := c.Client.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Timestamps: true}).DoRaw(ctx)
		got = string(b)
		return err
	})
	stamp := first.Format(time.RFC3339Nano)
	if want := stamp + " hello\n" + stamp + " world\n"; got != want {
		t.Fatalf("log = %q, want %q", got, want)
	}

	stream, err := c.Client.CoreV1().Pods(ns).GetLogs(pod.Name, &corev1.PodLogOptions{Follow: true}).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	lines := bufio.NewScanner(stream)
	var seen []string
	for len(seen) < 2 && lines.Scan() {
		seen = append(seen, lines.Text())
	}
	log.Write(t, first.Add(time.Second), "later")
	if !lines.Scan() {
		t.Fatalf("follow ended after %q: %v", seen, lines.Err())
	}
	seen = append(seen, lines.Text())
	if strings.Join(seen, ",") != "hello,world,later" {
		t.Errorf("followed %q, want hello, world, later", seen)
	}
}
