package kubetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skiff-sh/skiff/internal/testenv"
)

// shared is the one cluster of a test binary.
var shared struct {
	once    sync.Once
	mainRun bool
	c       *Cluster
	err     error
	took    time.Duration
}

// Main runs a package's tests and then stops the cluster they shared.
// Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(kubetest.Main(m)) }
func Main(m *testing.M) int {
	shared.mainRun = true
	code := m.Run()
	if shared.c != nil {
		shared.c.Stop()
	}
	return code
}

// Require returns the test binary's cluster, starting it on first use.
// Without the binaries it skips t with how to install them, or fails it
// under SKIFF_REQUIRE_INTEGRATION=1.
func Require(t testing.TB) *Cluster {
	t.Helper()
	if !shared.mainRun {
		t.Fatal("kubetest.Require needs the package's TestMain to call kubetest.Main, which stops the cluster at the end")
	}
	if _, err := FindTools(); err != nil {
		if testenv.RequireIntegration() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	shared.once.Do(func() {
		start := time.Now()
		shared.c, shared.err = Start(context.Background(), Options{})
		shared.took = time.Since(start)
		if shared.err == nil {
			fmt.Fprintf(os.Stderr, "kubetest: cluster ready at %s in %s\n", shared.c.Config.Host, shared.took.Round(time.Millisecond))
		}
	})
	if shared.err != nil {
		t.Fatalf("start the Kubernetes test cluster: %v", shared.err)
	}
	return shared.c
}

// StartupTime is how long the shared cluster took to become ready, or 0
// when it has not started.
func StartupTime() time.Duration { return shared.took }

var nonLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// Namespace creates a namespace of t's own, named after it, and waits
// for its default service account (pods cannot be created before it
// exists). It is deleted when t ends.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	base := strings.Trim(nonLabel.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(base) > 40 {
		base = strings.TrimRight(base[:40], "-")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: base + "-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete namespace %s: %v", ns.Name, err)
		}
	})
	err = c.await(ctx, "the default service account of "+ns.Name, func(ctx context.Context) error {
		_, err := c.Client.CoreV1().ServiceAccounts(ns.Name).Get(ctx, "default", metav1.GetOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// IsToolsMissing reports whether err says the cluster's tools are not
// installed.
func IsToolsMissing(err error) bool { return errors.Is(err, ErrToolsMissing) }
