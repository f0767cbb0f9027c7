package server

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/endpointslices"
	"github.com/skiff-sh/skiff/internal/kubetest"
	"github.com/skiff-sh/skiff/internal/runtime/kubernetes"
	"github.com/skiff-sh/skiff/internal/testenv"
)

// runKubeServer runs `skiff server --runtime kubernetes` on dir until the
// returned stop is called, its API on apiAddr with an edge token read
// from tokenFile.
func runKubeServer(t *testing.T, c *kubetest.Cluster, ns, dir, apiAddr, tokenFile string) (stop func()) {
	t.Helper()
	return runKubeServerAt(t, c, ns, dir, "127.0.0.1:0", apiAddr, tokenFile)
}

// runKubeServerAt is runKubeServer with its edge at httpAddr.
func runKubeServerAt(t *testing.T, c *kubetest.Cluster, ns, dir, httpAddr, apiAddr, tokenFile string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- Run(ctx, Config{
			DataDir: dir, HTTPAddr: httpAddr, APIAddr: apiAddr, Domain: "localhost",
			Runtime: "kubernetes", Kube: KubeConfig{Kubeconfig: c.Kubeconfig, Namespace: ns},
			EdgeTokenFile: tokenFile,
			Logger:        slog.New(slog.DiscardHandler),
			Ready:         func() { close(ready) },
			Edge:          EdgeConfig{AccessLog: "off"},
		})
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("server: %v", err)
	case <-time.After(time.Minute):
		cancel()
		t.Fatal("server not ready within a minute")
	}
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

// edgeMetric reads one sample of the edge's /metrics, 0 when absent.
func edgeMetric(t *testing.T, addr, series string) float64 {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("edge metrics: %v", err)
	}
	defer res.Body.Close()
	sc := bufio.NewScanner(res.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return f
		}
	}
	return 0
}

// An edge of its own (`skiff edge --kube-namespace`) follows the server's
// routes and the release's EndpointSlices. With the server stopped, a pod
// deleted through the Kubernetes API leaves the edge's backends and its
// replacement, which the server never saw, joins them: not one request
// fails. The restarted server is followed again.
func TestKubernetesEdgeFollowsSlicesWithoutTheServer(t *testing.T) {
	if !kubetest.InNetNS(t) {
		return
	}
	c := kubetest.Require(t)
	ns := c.Namespace(t)
	standIns := c.StartStandIns(t, ns, func(p *corev1.Pod) string {
		return fmt.Sprintf("release %s pod %s", p.Labels[kubernetes.LabelRelease], p.Name)
	})
	dir := testenv.DataDir(t)
	apiAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	token := "edge-" + strconv.FormatInt(time.Now().UnixNano(), 16) + "-0123456789abcdef"
	tokenFile := filepath.Join(t.TempDir(), "edge.token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stopServer := runKubeServer(t, c, ns, dir, apiAddr, tokenFile)
	cl, err := client.New("unix://"+filepath.Join(dir, SocketName), "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// The edge process, fed through the API with the edge token.
	edgeAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	metricsAddr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	ectx, stopEdge := context.WithCancel(context.Background())
	edgeDone := make(chan error, 1)
	edgeReady := make(chan struct{})
	go func() {
		edgeDone <- RunEdge(ectx, EdgeProcConfig{
			Server: "http://" + apiAddr, Token: token, Name: "edge-a",
			HTTPAddr: edgeAddr, MetricsAddr: metricsAddr,
			KubeNamespace: ns, Kubeconfig: c.Kubeconfig,
			Edge:   EdgeConfig{AccessLog: "off"},
			Logger: slog.New(slog.DiscardHandler),
			Ready:  func() { close(edgeReady) },
		})
	}()
	select {
	case <-edgeReady:
	case err := <-edgeDone:
		t.Fatalf("edge: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("edge not ready within a minute")
	}
	t.Cleanup(func() {
		stopEdge()
		if err := <-edgeDone; err != nil {
			t.Errorf("edge: %v", err)
		}
	})
	e := &edgeProbe{addr: edgeAddr, c: c, ns: ns, http: &http.Client{Timeout: 5 * time.Second}}

	rel := deploySpec(t, cl, appSpec("shop", 1, "")).Number
	mustComplete(t, cl, "shop", rel)
	e.awaitServedBy(t, "shop.localhost", "shop", rel, 3)
	var followed uint64
	kubetest.Await(t, 30*time.Second, "edge-a following the server", func() error {
		edges, err := cl.Edges(ctx)
		if err != nil {
			return err
		}
		if len(edges) != 1 || edges[0].Name != "edge-a" || !edges[0].Connected || edges[0].Generation == 0 {
			return fmt.Errorf("edges: %+v", edges)
		}
		followed = edges[0].Generation
		return nil
	})

	// Our own view of the slices, to know when the cluster dropped the pod.
	slices := endpointslices.New(c.Client, ns, slog.New(slog.DiscardHandler))
	if err := slices.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer slices.Close()
	service := kubernetes.ServiceName("shop", rel)
	listed := func(pod string) bool {
		eps, _ := slices.Ready(service)
		for _, ep := range eps {
			if ep.ID == pod {
				return true
			}
		}
		return false
	}

	stopServer()
	before := e.pods(t, "shop", rel)
	var gone string
	for name := range before {
		gone = name
		break
	}
	connectErrors := `skiff_edge_upstream_errors_total{app="shop",kind="connect"}`
	res := e.underLoad(t, "shop.localhost", "a pod deleted while the server is away", func() {
		if err := c.Client.CoreV1().Pods(ns).Delete(ctx, gone, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		kubetest.Await(t, 30*time.Second, "pod "+gone+" gone from the slices", func() error {
			if listed(gone) {
				return fmt.Errorf("still listed ready")
			}
			return nil
		})
		// The replacement, which the stopped server never saw, answers
		// through the edge: the edge took it from the slices.
		var replacement string
		kubetest.Await(t, time.Minute, "the replacement pod answering through the edge", func() error {
			counts, err := e.round("shop.localhost", 60)
			if err != nil {
				return err
			}
			for a := range counts {
				if _, pod, ok := parseAnswer(a); ok && before[pod] == nil && pod != gone {
					replacement = pod
				}
			}
			if replacement == "" {
				return fmt.Errorf("answers: %v", counts)
			}
			return nil
		})
		t.Logf("replacement %s of %s serves through the edge; %d connect errors before the edge dropped %s", replacement, gone,
			int(edgeMetric(t, metricsAddr, connectErrors)), gone)
		// From here on no request goes to where the deleted pod was.
		base := edgeMetric(t, metricsAddr, connectErrors)
		counts, err := e.round("shop.localhost", 200)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.checkOnly(t, counts, "shop", rel); err != nil {
			t.Error(err)
		}
		for a := range counts {
			if _, pod, _ := parseAnswer(a); pod == gone {
				t.Errorf("the deleted pod %s answered: %v", gone, counts)
			}
		}
		if n := edgeMetric(t, metricsAddr, connectErrors) - base; n != 0 {
			t.Errorf("%v requests tried a backend that refused connections after the slices dropped %s", n, gone)
		}
	})
	if res.total == 0 || res.failed != 0 {
		t.Errorf("while the server was away: %s", res)
	}
	if _, ok := standIns.Answering()[gone]; ok {
		t.Errorf("the deleted pod %s still has a stand-in", gone)
	}

	// The restarted server's snapshots are newer: the edge follows it.
	runKubeServer(t, c, ns, dir, apiAddr, tokenFile)
	kubetest.Await(t, time.Minute, "edge-a following the restarted server", func() error {
		edges, err := cl.Edges(ctx)
		if err != nil {
			return err
		}
		if len(edges) != 1 || !edges[0].Connected || edges[0].Generation <= followed {
			return fmt.Errorf("edges: %+v (generation before the restart %d)", edges, followed)
		}
		return nil
	})
	e.awaitServedBy(t, "shop.localhost", "shop", rel, 3)
}
