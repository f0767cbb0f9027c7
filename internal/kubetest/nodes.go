package kubetest

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CreateNode registers a node that kwok brings to Ready and keeps alive;
// pods bound to it become Running at once. A node of that name that
// already exists is left as it is.
func (c *Cluster) CreateNode(ctx context.Context, name string) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("32"),
		corev1.ResourceMemory: resource.MustParse("256Gi"),
		corev1.ResourcePods:   resource.MustParse("110"),
	}
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
			Labels: map[string]string{
				"kubernetes.io/hostname": name,
				"kubernetes.io/os":       "linux",
				"type":                   "kwok",
			},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}
	_, err := c.Client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create node %s: %w", name, err)
	}
	if !slices.Contains(c.nodes, name) {
		c.nodes = append(c.nodes, name)
	}
	return nil
}

// DeleteNode deletes one of the cluster's nodes, as a cloud provider does
// with a machine that is gone; the pods bound to it are then collected
// by the controller manager and their ReplicaSets replace them. When t
// ends, the node is created again and awaited Ready, so later tests find
// the cluster whole.
func (c *Cluster) DeleteNode(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Client.CoreV1().Nodes().Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete node %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := c.CreateNode(ctx, name); err != nil {
			t.Errorf("restore node %s: %v", name, err)
			return
		}
		start := time.Now()
		if err := c.await(ctx, "node "+name+" Ready again", c.nodesReady); err != nil {
			t.Errorf("restore node %s: %v", name, err)
		}
		t.Logf("node %s restored in %s", name, time.Since(start).Round(time.Millisecond))
	})
}
