package server

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/kubetest"
	"github.com/skiff-sh/skiff/internal/runtime/kubernetes"
	"github.com/skiff-sh/skiff/internal/testenv"
)

// serveKube runs a skiff server with --runtime kubernetes on namespace
// ns of c over data dir dir until the returned stop is called (or the
// test ends), and returns its client.
func serveKube(t *testing.T, c *kubetest.Cluster, ns, dir string) (*client.Client, func()) {
	t.Helper()
	stop := runKubeServer(t, c, ns, dir, "127.0.0.1:0", "")
	cl, err := client.New("unix://"+filepath.Join(dir, SocketName), "")
	if err != nil {
		t.Fatal(err)
	}
	return cl, stop
}

// appLog reads an app's whole log through the API, as `skiff logs`
// does, as lines "instance: text" by instance.
func appLog(cl *client.Client, app string) (map[string][]string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := map[string][]string{}
	err := cl.Logs(ctx, app, client.LogQuery{}, func(l api.LogLine) error {
		got[l.Instance] = append(got[l.Instance], l.Text)
		return nil
	})
	return got, err
}

func awaitAppLog(t *testing.T, cl *client.Client, app string, want map[string][]string) {
	t.Helper()
	kubetest.Await(t, 30*time.Second, "the pods' lines in skiff logs "+app, func() error {
		got, err := appLog(cl, app)
		if err != nil {
			return err
		}
		for id, lines := range want {
			if !slices.Equal(got[id], lines) {
				return fmt.Errorf("instance %s shows %q, want %q", id, got[id], lines)
			}
		}
		if len(got) != len(want) {
			return fmt.Errorf("lines of %d instances, want %d: %q", len(got), len(want), got)
		}
		return nil
	})
}

// `skiff logs` on the kubernetes runtime: what the pods write shows
// under their names through the API, -f sees a line written later, and
// after the server restarts every line shows once, those written
// meanwhile included.
func TestKubeLogsThroughAPI(t *testing.T) {
	c := kubetest.Require(t)
	ns := c.Namespace(t)
	dir := testenv.DataDir(t)
	cl, stop := serveKube(t, c, ns, dir)
	rel := deploySpec(t, cl, "name: chat\nimage: "+testImage("chat", 1)+"\nport: 8080\nreplicas: 2\nhealth: {path: /healthz}\n")
	if got := awaitRelease(t, cl, "chat", rel.Number); got.Status != "complete" {
		t.Fatalf("release %d is %s: %s", rel.Number, got.Status, got.Message)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	list, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: kubernetes.LabelApp + "=chat"})
	if err != nil || len(list.Items) != 2 {
		t.Fatalf("pods of chat: %d, %v; want 2", len(list.Items), err)
	}
	var pods []string
	for _, p := range list.Items {
		pods = append(pods, p.Name)
	}
	sort.Strings(pods)
	a, b := pods[0], pods[1]
	logA, logB := c.ServePodLog(t, ns, a), c.ServePodLog(t, ns, b)
	t0 := time.Now().UTC().Truncate(time.Second).Add(250 * time.Millisecond)
	logA.Write(t, t0, "listening on :8080")
	logB.Write(t, t0, "listening on :8080", "GET /healthz 200")
	want := map[string][]string{a: {"listening on :8080"}, b: {"listening on :8080", "GET /healthz 200"}}
	awaitAppLog(t, cl, "chat", want)

	followed := make(chan api.LogLine, 16)
	go cl.Logs(ctx, "chat", client.LogQuery{Follow: true, Tail: 1}, func(l api.LogLine) error {
		followed <- l
		return nil
	})
	<-followed // the last line so far
	logA.Write(t, t0.Add(time.Second), "GET / 200")
	select {
	case l := <-followed:
		if l.Instance != a || l.Text != "GET / 200" || l.Release != rel.Number {
			t.Errorf("skiff logs -f showed %+v, want GET / 200 of %s, release %d", l, a, rel.Number)
		}
	case <-ctx.Done():
		t.Fatal("skiff logs -f never showed a line the pod wrote")
	}
	want[a] = append(want[a], "GET / 200")

	// The server stops; the pods write on, one line at the very instant
	// of the last one shown.
	stop()
	logA.Write(t, t0.Add(time.Second), "GET /about 200")
	logB.Write(t, t0.Add(3*time.Second), "GET /healthz 200")
	want[a] = append(want[a], "GET /about 200")
	want[b] = append(want[b], "GET /healthz 200")
	cl, _ = serveKube(t, c, ns, dir)
	awaitAppLog(t, cl, "chat", want)
}
