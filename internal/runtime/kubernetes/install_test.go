package kubernetes

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"

	"github.com/skiff-sh/skiff/internal/kubetest"
)

func TestInstallGolden(t *testing.T) {
	objs, err := InstallObjects(InstallOptions{Image: "ghcr.io/skiff-sh/skiff:0.1.0", Domain: "club.example.com", EdgeToken: "golden-edge-token",
		AppStorageClass: "local-path", InsecureRegistries: []string{"registry.club.lan:5000"}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteYAML(&buf, objs); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "install.yaml")
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if buf.String() != string(want) {
		t.Errorf("install rendering differs from %s (go test -update rewrites it after review):\n%s", path, lineDiff(string(want), buf.String()))
	}
}

func TestInstallRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		o    InstallOptions
		says string
	}{
		{InstallOptions{}, "--image is required"},
		{InstallOptions{Image: "x", EdgeService: "Ingress"}, `--edge-service "Ingress"`},
		{InstallOptions{Image: "x", Storage: "lots"}, `--storage "lots"`},
		{InstallOptions{Image: "x", InsecureRegistries: []string{"http://registry.club.lan"}}, `--insecure-registry "http://registry.club.lan": not a host`},
	} {
		if _, err := InstallObjects(tc.o); err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("InstallObjects(%+v) = %v; want an error saying %s", tc.o, err, tc.says)
		}
	}
}

// The install applied to a real cluster creates what it rendered; a
// second apply changes nothing; uninstall leaves nothing behind.
func TestInstallAppliesAndUninstallRemovesAll(t *testing.T) {
	t.Parallel()
	c := kubetest.Require(t)
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ns := fmt.Sprintf("skiff-install-%d", time.Now().UnixNano()%1e6)
	objs, err := InstallObjects(InstallOptions{Namespace: ns, Image: "registry.example/skiff:1", EdgeService: "NodePort"})
	if err != nil {
		t.Fatal(err)
	}
	var said []string
	report := func(s string) { said = append(said, s) }
	if err := Apply(ctx, dyn, objs, report); err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		res, _ := resourceOf(dyn, obj)
		got, err := res.Get(ctx, obj.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s %s after install: %v", obj.GetKind(), obj.GetName(), err)
		}
		if got.GetLabels()[LabelManagedBy] != ManagedBy {
			t.Errorf("%s %s is not labelled as skiff's", obj.GetKind(), obj.GetName())
		}
	}
	dep, err := c.Client.AppsV1().Deployments(ns).Get(ctx, "skiff", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Spec.Template.Spec.ServiceAccountName != "skiff" || dep.Spec.Strategy.Type != "Recreate" {
		t.Errorf("control plane runs as %q with strategy %q", dep.Spec.Template.Spec.ServiceAccountName, dep.Spec.Strategy.Type)
	}
	before := dep.ResourceVersion
	edgeToken := func() string {
		s, err := c.Client.CoreV1().Secrets(ns).Get(ctx, edgeTokenSecret, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("edge token secret: %v", err)
		}
		return string(s.Data[edgeTokenKey])
	}
	token := edgeToken()
	if len(token) < 32 {
		t.Errorf("edge token of %d characters, want a long random one", len(token))
	}
	// Rendered again, the install makes a new token; applied over the
	// running one, it keeps the installed token and changes nothing.
	again, err := InstallObjects(InstallOptions{Namespace: ns, Image: "registry.example/skiff:1", EdgeService: "NodePort"})
	if err != nil {
		t.Fatal(err)
	}
	if err := Apply(ctx, dyn, again, report); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if dep, _ := c.Client.AppsV1().Deployments(ns).Get(ctx, "skiff", metav1.GetOptions{}); dep.ResourceVersion != before {
		t.Error("a second apply of the same install changed the deployment")
	}
	if got := edgeToken(); got != token {
		t.Error("a second apply replaced the installed edge token")
	}
	// The edge runs on its own, and its Service selects it, not the
	// control plane.
	edgeDep, err := c.Client.AppsV1().Deployments(ns).Get(ctx, edgeService, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *edgeDep.Spec.Replicas != edgeReplicas || edgeDep.Spec.Template.Spec.ServiceAccountName != edgeService ||
		edgeDep.Spec.Template.Spec.Containers[0].Args[0] != "edge" {
		t.Errorf("edge deployment: %d replicas, service account %q, args %v", *edgeDep.Spec.Replicas,
			edgeDep.Spec.Template.Spec.ServiceAccountName, edgeDep.Spec.Template.Spec.Containers[0].Args)
	}
	edgeSvc, err := c.Client.CoreV1().Services(ns).Get(ctx, edgeService, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if edgeSvc.Spec.Selector[componentKey] != "edge" {
		t.Errorf("the edge's Service selects %v, want the edge's pods", edgeSvc.Spec.Selector)
	}

	// The service account may do what the runtime does, and not more.
	sa := "system:serviceaccount:" + ns + ":skiff"
	for _, tc := range []struct {
		verb, group, resource, sub, namespace string
		allowed                               bool
	}{
		{"create", "apps", "replicasets", "", ns, true},
		{"update", "apps", "replicasets", "scale", ns, true},
		{"patch", "", "pods", "", ns, true},
		{"get", "", "pods", "log", ns, true},
		{"get", "", "pods", "log", "default", false},
		{"create", "", "pods", "exec", ns, false},
		// The apps' volume claims, in its namespace; never the volumes
		// behind them, nor claims elsewhere.
		{"patch", "", "persistentvolumeclaims", "", ns, true},
		{"delete", "", "persistentvolumeclaims", "", ns, true},
		{"delete", "", "persistentvolumeclaims", "", "default", false},
		{"create", "", "persistentvolumes", "", "", false},
		{"create", "apps", "replicasets", "", "default", false},
		{"get", "", "secrets", "", ns, false},
		{"create", "apps", "deployments", "", ns, false},
		// Nodes are read cluster-wide, and only read.
		{"list", "", "nodes", "", "", true},
		{"watch", "", "nodes", "", "", true},
		{"patch", "", "nodes", "status", "", false},
		{"delete", "", "nodes", "", "", false},
		{"list", "", "pods", "", "", false},
	} {
		if got := canI(t, c, sa, tc.verb, tc.group, tc.resource, tc.sub, tc.namespace); got != tc.allowed {
			t.Errorf("%s may %s %s/%s in %s: %v, want %v", sa, tc.verb, tc.resource, tc.sub, tc.namespace, got, tc.allowed)
		}
	}
	// The edge's service account reads EndpointSlices there, nothing else.
	edgeSA := "system:serviceaccount:" + ns + ":" + edgeService
	for _, tc := range []struct {
		verb, group, resource, namespace string
		allowed                          bool
	}{
		{"watch", "discovery.k8s.io", "endpointslices", ns, true},
		{"list", "discovery.k8s.io", "endpointslices", ns, true},
		{"get", "discovery.k8s.io", "endpointslices", ns, true},
		{"create", "discovery.k8s.io", "endpointslices", ns, false},
		{"watch", "discovery.k8s.io", "endpointslices", "default", false},
		{"get", "", "secrets", ns, false},
		{"list", "", "pods", ns, false},
		{"list", "", "services", ns, false},
		{"list", "", "nodes", "", false},
		{"create", "apps", "replicasets", ns, false},
	} {
		if got := canI(t, c, edgeSA, tc.verb, tc.group, tc.resource, "", tc.namespace); got != tc.allowed {
			t.Errorf("%s may %s %s in %q: %v, want %v", edgeSA, tc.verb, tc.resource, tc.namespace, got, tc.allowed)
		}
	}

	if err := Delete(ctx, dyn, objs, report); err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		res, _ := resourceOf(dyn, obj)
		if _, err := res.Get(ctx, obj.GetName(), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("%s %s after uninstall: %v", obj.GetKind(), obj.GetName(), err)
		}
	}
	t.Logf("install and uninstall said:\n%s", strings.Join(said, "\n"))
}

// An object of the install's names that skiff did not make stops the
// install before anything changes; uninstall leaves it alone too.
func TestInstallLeavesForeignObjectsAlone(t *testing.T) {
	t.Parallel()
	c := kubetest.Require(t)
	ns := c.Namespace(t)
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.Client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "skiff", Namespace: ns},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	objs, err := InstallObjects(InstallOptions{Namespace: ns, Image: "registry.example/skiff:1"})
	if err != nil {
		t.Fatal(err)
	}
	err = Apply(ctx, dyn, objs, func(string) {})
	if !errors.Is(err, ErrNotOurs) {
		t.Fatalf("install over a foreign service account: %v, want ErrNotOurs", err)
	}
	if _, err := c.Client.RbacV1().Roles(ns).Get(ctx, "skiff", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a refused install created its role: %v", err)
	}
	var said []string
	if err := Delete(ctx, dyn, objs, func(s string) { said = append(said, s) }); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "skiff", metav1.GetOptions{}); err != nil {
		t.Errorf("uninstall removed a service account it did not make: %v", err)
	}
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Errorf("uninstall removed a namespace it did not make: %v", err)
	}
	if !strings.Contains(strings.Join(said, "\n"), "is not skiff's: left alone") {
		t.Errorf("uninstall did not say what it left alone: %q", said)
	}
}
