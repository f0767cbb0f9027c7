package endpointslices

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/edgefeed"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/kubetest"
	"github.com/skiff-sh/skiff/internal/runtime/kubernetes"
)

func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }

var quiet = slog.New(slog.DiscardHandler)

// The watcher follows a release's pods through its Service's slices, on
// a real control plane: more pods appear once ready, a deleted pod
// leaves, and what the control plane excludes never appears.
func TestWatcherFollowsAReleasesPods(t *testing.T) {
	c := kubetest.Require(t)
	ns := c.Namespace(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	rt, err := kubernetes.New(kubernetes.Options{Client: c.Client, Namespace: ns, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	tmpl := instance.Template{App: "web", Release: 1, Image: "registry.example/web:1", Port: 8080}
	if err := rt.Scale(ctx, tmpl, 2); err != nil {
		t.Fatal(err)
	}
	service := kubernetes.ServiceName("web", 1)

	w := New(c.Client, ns, quiet)
	changed := w.Notify()
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	// Whatever the watcher lists is a ready pod of the release, named
	// and addressed as the API server says, and never the excluded pod:
	// every change is resolved as the edge would, and checked.
	var mu sync.Mutex
	var excluded string
	var problems []string
	seen := map[string]bool{}
	check := func() {
		mu.Lock()
		defer mu.Unlock()
		snap := &edge.Snapshot{Generation: 1, Routes: []edge.Route{{Host: "web", Discover: []edge.Discovery{
			{Release: 1, Service: service, Port: 8080, Exclude: []string{excluded}},
		}}}}
		for _, b := range edgefeed.Resolve(snap, w).Routes[0].Backends {
			if excluded != "" {
				seen[b.ID] = true
			}
			if b.ID == excluded {
				problems = append(problems, "excluded pod "+b.ID+" served at "+b.Addr)
			}
			p, err := c.Client.CoreV1().Pods(ns).Get(ctx, b.ID, metav1.GetOptions{})
			if err != nil {
				// Deleted after the slice listed it ready: gone from the
				// next list, which the test awaits.
				continue
			}
			if want := net.JoinHostPort(p.Status.PodIP, "8080"); b.Addr != want {
				problems = append(problems, fmt.Sprintf("pod %s listed at %s, its address is %s", b.ID, b.Addr, want))
			}
			if !podReady(p) {
				problems = append(problems, "pod "+b.ID+" listed before it was ready")
			}
		}
	}
	watchDone := make(chan struct{})
	watchCtx, stopWatch := context.WithCancel(ctx)
	go func() {
		defer close(watchDone)
		for {
			select {
			case <-watchCtx.Done():
				return
			case <-changed:
				check()
			}
		}
	}()

	listed := func() []string {
		eps, _ := w.Ready(service)
		var out []string
		for _, ep := range eps {
			out = append(out, ep.ID+"@"+ep.IP)
		}
		return out
	}
	// readyPods lists the release's ready pods as the API server has them.
	readyPods := func() ([]string, error) {
		pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelRelease + "=1"})
		if err != nil {
			return nil, err
		}
		var out []string
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil && podReady(&p) {
				out = append(out, p.Name+"@"+p.Status.PodIP)
			}
		}
		slices.Sort(out)
		return out, nil
	}
	awaitListed := func(what string, n int) []string {
		t.Helper()
		var got []string
		kubetest.Await(t, time.Minute, what, func() error {
			want, err := readyPods()
			if err != nil {
				return err
			}
			got = listed()
			if len(want) != n || !slices.Equal(got, want) {
				return fmt.Errorf("listed %v, ready pods %v (want %d)", got, want, n)
			}
			return nil
		})
		return got
	}

	first := awaitListed("the 2 pods of release 1 listed", 2)
	if _, ok := w.Ready("skiff-nothing-1"); ok {
		t.Error("a service without slices is reported as listed")
	}

	// One pod is excluded from here on, as a draining one would be.
	mu.Lock()
	excluded = podName(first[0])
	mu.Unlock()
	check()

	if err := rt.Scale(ctx, tmpl, 3); err != nil {
		t.Fatal(err)
	}
	grown := awaitListed("a third pod listed once ready", 3)

	// A pod deleted (not the excluded one) leaves the list; its
	// ReplicaSet's replacement joins it once ready.
	gone := podName(grown[len(grown)-1])
	if gone == excluded {
		gone = podName(grown[len(grown)-2])
	}
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, gone, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	kubetest.Await(t, time.Minute, "the deleted pod "+gone+" gone from the list", func() error {
		for _, l := range listed() {
			if podName(l) == gone {
				return fmt.Errorf("still listed: %v", listed())
			}
		}
		return nil
	})
	final := awaitListed("the replacement pod listed", 3)
	if slices.ContainsFunc(final, func(l string) bool { return podName(l) == gone }) {
		t.Errorf("the deleted pod %s is listed again: %v", gone, final)
	}

	stopWatch()
	<-watchDone
	check()
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	// Once one pod was excluded: the other first one, the third and the
	// replacement.
	if len(seen) < 3 {
		t.Errorf("resolved only %d pods as backends after the exclusion, want the grown and the replacement ones too: %v", len(seen), seen)
	}
	t.Logf("listed at the end: %v; pods resolved over the run: %d", final, len(seen))
}

func podName(listed string) string {
	for i := range listed {
		if listed[i] == '@' {
			return listed[:i]
		}
	}
	return listed
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
