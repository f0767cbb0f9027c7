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
	objs, err := InstallObjects(InstallOptions{Image: "ghcr.io/skiff-sh/skiff:0.1.0", Domain: "club.example.com"})
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
	if err := Apply(ctx, dyn, objs, report); err != nil {
		t.Fatalf("second apply: %v", err)
	}
	if dep, _ := c.Client.AppsV1().Deployments(ns).Get(ctx, "skiff", metav1.GetOptions{}); dep.ResourceVersion != before {
		t.Error("a second apply of the same install changed the deployment")
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
		{"create", "apps", "replicasets", "", "default", false},
		{"get", "", "secrets", "", ns, false},
		{"create", "apps", "deployments", "", ns, false},
	} {
		if got := canI(t, c, sa, tc.verb, tc.group, tc.resource, tc.sub, tc.namespace); got != tc.allowed {
			t.Errorf("%s may %s %s/%s in %s: %v, want %v", sa, tc.verb, tc.resource, tc.sub, tc.namespace, got, tc.allowed)
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
