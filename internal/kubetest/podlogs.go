package kubetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Pod logs: kwok runs no containers, but its server answers the kubelet's
// /containerLogs/{namespace}/{pod}/{container} from a file in the CRI log
// format, chosen per pod by a kwok Logs object. Each node reports
// 127.0.0.1 and kwok's port as its kubelet endpoint, so kube-apiserver's
// pods/log proxy reaches kwok on loopback (over TLS that it does not
// verify, as it never does without --kubelet-certificate-authority).
// Clients then read a pod's log through the API exactly as on a real
// cluster, follow and timestamps included.

// podLogServer is what a cluster needs to serve pod logs.
type podLogServer struct {
	dyn dynamic.Interface
}

// kwokLogs is the kwok resource that says which file serves a pod's log.
var kwokLogs = schema.GroupVersionResource{Group: "kwok.x-k8s.io", Version: "v1alpha1", Resource: "logs"}

var crds = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// logsCRD defines kwok's Logs resource. The schema keeps whatever is
// given: kwok's own definition (in its module's kustomize/crd) is long
// and checks nothing a test needs.
func logsCRD() *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1",
		"kind":       "CustomResourceDefinition",
		"metadata":   map[string]any{"name": kwokLogs.Resource + "." + kwokLogs.Group},
		"spec": map[string]any{
			"group": kwokLogs.Group,
			"scope": "Namespaced",
			"names": map[string]any{"kind": "Logs", "listKind": "LogsList", "plural": "logs", "singular": "logs"},
			"versions": []any{map[string]any{
				"name": kwokLogs.Version, "served": true, "storage": true,
				"subresources": map[string]any{"status": map[string]any{}},
				"schema": map[string]any{"openAPIV3Schema": map[string]any{
					"type": "object", "x-kubernetes-preserve-unknown-fields": true,
				}},
			}},
		},
	}}
}

// createLogsCRD creates kwok's Logs resource; it becomes usable a moment
// later (awaitLogsCRD).
func (c *Cluster) createLogsCRD(ctx context.Context) error {
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	c.podLogs = &podLogServer{dyn: dyn}
	_, err = dyn.Resource(crds).Create(ctx, logsCRD(), metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create kwok's Logs resource: %w", err)
	}
	return nil
}

// awaitLogsCRD waits until the API server serves kwok's Logs, so kwok
// finds them when it starts instead of retrying with backoff.
func (c *Cluster) awaitLogsCRD(ctx context.Context) error {
	return c.await(ctx, "kwok's Logs resource served", func(ctx context.Context) error {
		_, err := c.podLogs.dyn.Resource(kwokLogs).List(ctx, metav1.ListOptions{Limit: 1})
		return err
	})
}

// kwokLogArgs are kwok's flags for serving pod logs on port: its nodes
// report 127.0.0.1:port as their kubelet, where kwok's server listens.
func kwokLogArgs(port int) []string {
	return []string{
		"--enable-crds=Logs",
		"--node-ip=127.0.0.1", "--node-port=" + strconv.Itoa(port),
		"--server-address=127.0.0.1:" + strconv.Itoa(port),
	}
}

// PodLog is the file kwok serves as the log of one pod's containers. A
// test appends lines to it as the container would write them.
type PodLog struct {
	// Path is the file, in the CRI log format the kubelet reads.
	Path string
}

// ServePodLog makes kwok serve the log of pod in namespace (every
// container of it) from a new, empty file, and returns it. The pod need
// not exist yet. The file and kwok's Logs object go when t ends.
func (c *Cluster) ServePodLog(t testing.TB, namespace, pod string) *PodLog {
	t.Helper()
	path := filepath.Join(t.TempDir(), pod+".log")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatalf("create log file of pod %s: %v", pod, err)
	}
	obj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": kwokLogs.Group + "/" + kwokLogs.Version,
		"kind":       "Logs",
		"metadata":   map[string]any{"name": pod, "namespace": namespace},
		"spec": map[string]any{"logs": []any{map[string]any{
			"logsFile": path, "follow": true,
		}}},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.podLogs.dyn.Resource(kwokLogs).Namespace(namespace).Create(ctx, obj, metav1.CreateOptions{}); err != nil {
		t.Fatalf("serve log of pod %s/%s: %v", namespace, pod, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		err := c.podLogs.dyn.Resource(kwokLogs).Namespace(namespace).Delete(ctx, pod, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("stop serving log of pod %s/%s: %v", namespace, pod, err)
		}
	})
	return &PodLog{Path: path}
}

// Write appends lines to the log as the container runtime records what
// a container writes to stdout: each line stamped with at, in the order
// given.
func (l *PodLog) Write(t testing.TB, at time.Time, lines ...string) {
	t.Helper()
	var b strings.Builder
	stamp := at.UTC().Format(time.RFC3339Nano)
	for _, line := range lines {
		b.WriteString(stamp + " stdout F " + line + "\n")
	}
	f, err := os.OpenFile(l.Path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatalf("append to pod log: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatalf("append to pod log: %v", err)
	}
}
