package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/artifact"
	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/kubetest"
	"github.com/skiff-sh/skiff/internal/runtime/kubernetes"
	"github.com/skiff-sh/skiff/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

// kubeServer runs a skiff server with --runtime kubernetes on the test
// cluster, in a namespace of the test's own, and returns its client.
func kubeServer(t *testing.T) (*client.Client, *kubetest.Cluster, string) {
	t.Helper()
	return kubeServerAt(t, "127.0.0.1:0")
}

// kubeServerAt is kubeServer with its edge listening on httpAddr.
func kubeServerAt(t *testing.T, httpAddr string) (*client.Client, *kubetest.Cluster, string) {
	t.Helper()
	c := kubetest.Require(t)
	ns := c.Namespace(t)
	dir := testenv.DataDir(t)
	runKubeServerAt(t, c, ns, dir, httpAddr, "127.0.0.1:0", "")
	cl, err := client.New("unix://"+filepath.Join(dir, SocketName), "")
	if err != nil {
		t.Fatal(err)
	}
	return cl, c, ns
}

// testImage is an image reference pinned by digest, one per app and
// tag: the server deploys it without asking a registry, and the pods of
// the test cluster (kwok's) never pull it.
func testImage(app string, tag int) string {
	return fmt.Sprintf("registry.example/%s@sha256:%x", app, sha256.Sum256(fmt.Appendf(nil, "%s:%d", app, tag)))
}

func deploySpec(t *testing.T, cl *client.Client, spec string) api.Release {
	t.Helper()
	rel, err := tryDeploy(t, cl, spec)
	if err != nil {
		t.Fatalf("deploy: %v", err)
	}
	return rel
}

// tryDeploy uploads spec with a directory holding only it.
func tryDeploy(t *testing.T, cl *client.Client, spec string) (api.Release, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "skiff.yaml"), []byte(spec), 0o644); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := artifact.Pack(&buf, dir, 1<<20); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return cl.Deploy(ctx, "skiff.yaml", []byte(spec), &buf)
}

func awaitRelease(t *testing.T, cl *client.Client, app string, n int) api.Release {
	t.Helper()
	var rel api.Release
	kubetest.Await(t, 2*time.Minute, fmt.Sprintf("release %d of %s to finish", n, app), func() error {
		var err error
		rel, err = cl.Release(context.Background(), app, n)
		if err != nil {
			return err
		}
		if rel.Status == "pending" {
			return fmt.Errorf("still pending")
		}
		return nil
	})
	return rel
}

// `skiff server --runtime kubernetes`: an image app deploys as a
// ReplicaSet whose pods the status shows, scales, and is destroyed
// without a trace.
func TestServerRunsImageAppsOnKubernetes(t *testing.T) {
	cl, c, ns := kubeServer(t)
	rel := deploySpec(t, cl, "name: hello\nimage: "+testImage("hello", 1)+"\nport: 8080\nreplicas: 2\nhealth: {path: /healthz}\n")
	if got := awaitRelease(t, cl, "hello", rel.Number); got.Status != "complete" {
		t.Fatalf("release %d is %s: %s", rel.Number, got.Status, got.Message)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelApp + "=hello"})
	if err != nil || len(pods.Items) != 2 {
		t.Fatalf("pods of hello: %d, %v; want 2", len(pods.Items), err)
	}
	st, err := cl.App(ctx, "hello")
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Sets) != 1 || st.Sets[0].Ready() != 2 {
		t.Fatalf("status shows %+v, want one set with 2 ready instances", st.Sets)
	}
	for _, in := range st.Sets[0].Instances {
		if !strings.HasSuffix(in.Endpoint, ":8080") || !strings.HasPrefix(in.ID, "hello-1-") {
			t.Errorf("instance %s at %q: want a pod of hello-1 at its pod IP and port 8080", in.ID, in.Endpoint)
		}
	}

	if _, err := cl.Scale(ctx, "hello", 3); err != nil {
		t.Fatal(err)
	}
	kubetest.Await(t, time.Minute, "hello at 3 ready pods", func() error {
		st, err := cl.App(ctx, "hello")
		if err != nil {
			return err
		}
		if len(st.Sets) != 1 || st.Sets[0].Size != 3 || st.Sets[0].Ready() != 3 {
			return fmt.Errorf("sets %+v", st.Sets)
		}
		return nil
	})

	if err := cl.Destroy(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	kubetest.Await(t, time.Minute, "every object of hello gone", func() error {
		rss, err := c.Client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		pdbs, err := c.Client.PolicyV1().PodDisruptionBudgets(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if n := len(rss.Items) + len(pods.Items) + len(pdbs.Items); n > 0 {
			return fmt.Errorf("%d replicasets, %d pods, %d budgets left", len(rss.Items), len(pods.Items), len(pdbs.Items))
		}
		return nil
	})
}

// What a cluster cannot run is refused at deploy, at the field at fault,
// saying what to do, and nothing is created.
func TestServerRefusesWhatKubernetesCannotRun(t *testing.T) {
	cl, c, ns := kubeServer(t)
	for _, tc := range []struct{ name, spec, want string }{
		{"command only", "name: script\ncommand: ./run.sh\n", "skiff.yaml:2:1: command: this server runs apps on Kubernetes (--runtime kubernetes), which runs container images only"},
		{"build", "name: built\nbuild: ./\nport: 8080\n", "skiff.yaml:2:1: build: this server runs apps on Kubernetes (--runtime kubernetes), where builds on the server's Docker Engine cannot run: build and push the image"},
		{"volume size", "name: db\nimage: registry.example/db:1\nport: 5432\nvolumes: [{name: data, path: /data, size: 10GB}]\n", `skiff.yaml:4:37: volumes[0].size: invalid quantity "10GB": did you mean 10Gi`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tryDeploy(t, cl, tc.spec)
			var e *api.Error
			if !errors.As(err, &e) || e.Code != api.CodeInvalidSpec || !strings.Contains(e.Message, tc.want) {
				t.Fatalf("deploy: %v; want an invalid_spec error %q", err, tc.want)
			}
		})
	}
	if apps, err := cl.Apps(context.Background()); err != nil || len(apps) != 0 {
		t.Errorf("refused deploys left apps: %v, %v", apps, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rss, err := c.Client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil || len(rss.Items) != 0 {
		t.Errorf("refused apps left replicasets: %v, %v", rss.Items, err)
	}
}

func TestServerKubernetesNeedsANamespace(t *testing.T) {
	err := Run(context.Background(), Config{
		DataDir: testenv.DataDir(t), HTTPAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		Runtime: "kubernetes", Logger: slog.New(slog.DiscardHandler),
	})
	if err == nil || !strings.Contains(err.Error(), "--namespace") {
		t.Fatalf("Run without a namespace: %v; want an error naming --namespace", err)
	}
}

func TestServerKubernetesNamespaceMustExist(t *testing.T) {
	c := kubetest.Require(t)
	err := Run(context.Background(), Config{
		DataDir: testenv.DataDir(t), HTTPAddr: "127.0.0.1:0", APIAddr: "127.0.0.1:0",
		Runtime: "kubernetes", Kube: KubeConfig{Kubeconfig: c.Kubeconfig, Namespace: "no-such-namespace"},
		Logger: slog.New(slog.DiscardHandler),
	})
	if err == nil || !strings.Contains(err.Error(), "namespace no-such-namespace does not exist") {
		t.Fatalf("Run with a missing namespace: %v; want an error saying it does not exist", err)
	}
}

// A rolling deploy on Kubernetes: the shared rollout controller grows the
// new ReplicaSet one pod beyond the app's size at most, retires old pods
// one by one through MarkDraining and Remove, and deletes the old
// ReplicaSet; a rollback does the same towards the old image.
func TestServerRollingDeployOnKubernetes(t *testing.T) {
	cl, c, ns := kubeServer(t)
	spec := "name: shop\nimage: %s\nport: 8080\nreplicas: 3\nhealth: {path: /healthz}\n"
	first := deploySpec(t, cl, fmt.Sprintf(spec, testImage("shop", 1)))
	if got := awaitRelease(t, cl, "shop", first.Number); got.Status != "complete" {
		t.Fatalf("release %d is %s: %s", first.Number, got.Status, got.Message)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Watch the pods while the second release rolls out.
	stop := make(chan struct{})
	most := make(chan int, 1)
	go func() {
		peak := 0
		for {
			select {
			case <-stop:
				most <- peak
				return
			case <-time.After(20 * time.Millisecond):
			}
			pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelApp + "=shop"})
			if err != nil {
				continue
			}
			live := 0
			for i := range pods.Items {
				if pods.Items[i].DeletionTimestamp == nil {
					live++
				}
			}
			peak = max(peak, live)
		}
	}()
	start := time.Now()
	second := deploySpec(t, cl, fmt.Sprintf(spec, testImage("shop", 2)))
	got := awaitRelease(t, cl, "shop", second.Number)
	t.Logf("rolling deploy of 3 pods complete %s after the deploy", time.Since(start).Round(time.Millisecond))
	close(stop)
	peak := <-most
	if got.Status != "complete" {
		t.Fatalf("release %d is %s: %s", second.Number, got.Status, got.Message)
	}
	if peak > 4 {
		t.Errorf("%d pods ran at once during the rollout; max surge 1 allows 4", peak)
	}
	awaitOnly(t, c, ns, "shop", second.Number, testImage("shop", 2), 3)

	back, err := cl.Rollback(ctx, "shop", first.Number)
	if err != nil {
		t.Fatal(err)
	}
	if got := awaitRelease(t, cl, "shop", back.Number); got.Status != "complete" {
		t.Fatalf("rollback release %d is %s: %s", back.Number, got.Status, got.Message)
	}
	awaitOnly(t, c, ns, "shop", back.Number, testImage("shop", 1), 3)
}

// awaitOnly waits until app's only ReplicaSet is release's, running image
// in n pods.
func awaitOnly(t *testing.T, c *kubetest.Cluster, ns, app string, release int, image string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	kubetest.Await(t, time.Minute, fmt.Sprintf("only release %d of %s left, %d pods of %s", release, app, n, image), func() error {
		rss, err := c.Client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelApp + "=" + app})
		if err != nil {
			return err
		}
		if len(rss.Items) != 1 || rss.Items[0].Name != kubernetes.SetName(app, release) {
			var names []string
			for _, rs := range rss.Items {
				names = append(names, rs.Name)
			}
			return fmt.Errorf("replicasets %v", names)
		}
		rs := rss.Items[0]
		if img := rs.Spec.Template.Spec.Containers[0].Image; img != image {
			return fmt.Errorf("%s runs %s", rs.Name, img)
		}
		if rs.Status.ReadyReplicas != int32(n) || *rs.Spec.Replicas != int32(n) {
			return fmt.Errorf("%s has %d of %d ready", rs.Name, rs.Status.ReadyReplicas, *rs.Spec.Replicas)
		}
		return nil
	})
}
