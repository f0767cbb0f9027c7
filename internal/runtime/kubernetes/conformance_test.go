package kubernetes

import (
	"maps"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skiff-sh/skiff/internal/controller"
	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/kubetest"
	"github.com/skiff-sh/skiff/internal/runtimetest"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

// TestConformance runs the runtime conformance suite against a real
// control plane. kwok runs no containers, so the test runs in a network
// namespace of its own where a stand-in answers at each ready pod's IP
// as the suite's test app would ("<instance> <release>", and /healthz),
// and stops answering when its pod is deleted.
//
// What the kubelet does on a cluster (restarting crashed containers,
// probes, graceful stops) and what kwok cannot show (a process to kill)
// is skipped with the reason.
func TestConformance(t *testing.T) {
	if !kubetest.InNetNS(t) {
		return
	}
	c := kubetest.Require(t)
	// Each scenario's runtime works in a namespace of its own, as each
	// process runtime has a directory of its own; a runtime opened again
	// on the same directory (a control plane restarted) finds the same
	// namespace.
	var mu sync.Mutex
	namespaces := map[string]string{}
	namespaceOf := func(t *testing.T, dir string) string {
		mu.Lock()
		defer mu.Unlock()
		if ns, ok := namespaces[dir]; ok {
			return ns
		}
		ns := c.Namespace(t)
		c.StartStandIns(t, ns, func(p *corev1.Pod) string {
			return p.Name + " " + p.Labels[LabelRelease]
		})
		namespaces[dir] = ns
		return ns
	}
	kubelet := "the kubelet restarts crashed containers and runs the probes on a cluster; kwok runs no containers"
	runtimetest.Run(t, runtimetest.Harness{
		New: func(t *testing.T, dir string) controller.Runtime {
			return startRuntime(t, c, namespaceOf(t, dir), Options{})
		},
		Close: func(rt controller.Runtime) { rt.(*Runtime).Close() },
		Template: func(t *testing.T, app string, release int, env map[string]string) instance.Template {
			tm := appTemplate(app, release)
			tm.Env = maps.Clone(env)
			return tm
		},
		Capabilities:    supervisor.Capabilities{Name: "kubernetes"},
		StartResolution: time.Second,
		Skip: map[string]string{
			"crash-backoff": kubelet,
			"never-ready":   kubelet,
			"liveness":      kubelet,
			"graceful-stop": "the kubelet stops containers within the pod's termination grace period; kwok runs no containers",
			"logs":          "kwok runs no test app to write its start line; pod logs are shown through the API server by TestPodLogsReachTheAppLog",
		},
	})
}
