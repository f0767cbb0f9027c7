// Package kubetest runs a real Kubernetes control plane for tests: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler, with kwok
// simulating a few nodes whose pods become Running and Ready with IPs (no
// containers run; a pod's log is served from a file the test writes,
// ServePodLog). Everything listens on loopback ports and lives in a
// temporary directory removed at Stop.
//
// A test package shares one cluster per test binary: its TestMain calls
// Main, and each test calls Require, which starts the cluster on first
// use, or skips when the binaries are missing (scripts/kube-tools.sh
// installs them) and fails instead under SKIFF_REQUIRE_INTEGRATION=1.
// Tests isolate themselves in a Namespace of their own.
//
// To send real traffic to pods, a test runs itself in a network
// namespace of its own (InNetNS), where the pod range is local, and
// StartStandIns answers HTTP at each pod's IP and port.
package kubetest

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/internal/testenv"
)

// Options shape a cluster. The zero value is a good default.
type Options struct {
	// Nodes is how many kwok nodes to create. Default 3.
	Nodes int
	// PodCIDR is where kwok takes pod IPs from. Default 10.244.0.0/16.
	// Nothing is ever sent to these addresses: no pod really runs.
	PodCIDR string
	// Timeout bounds the start. Default 2m (the machine may be busy).
	Timeout time.Duration
}

// Cluster is a running control plane.
type Cluster struct {
	// Config reaches the API server as an admin (group system:masters).
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file with the same
	// credentials, for tools that take one.
	Kubeconfig string
	// Client is a clientset over Config.
	Client kubernetes.Interface

	dir, dataDir string
	nodes        []string
	launcher     *launcher
	podLogs      *podLogServer
	procs        []*process
}

// Start starts a cluster and waits until it is ready: the API server
// answers /readyz, the controller manager and scheduler answer /healthz,
// the default service account exists and every node is Ready.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	tools, err := FindTools()
	if err != nil {
		return nil, err
	}
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	if opts.PodCIDR == "" {
		opts.PodCIDR = PodCIDR
	}
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "skiff-kube-")
	if err != nil {
		return nil, fmt.Errorf("cluster dir: %w", err)
	}
	// etcd fsyncs every write; on tmpfs that costs nothing.
	dataDir, err := os.MkdirTemp(shmOr(dir), "skiff-etcd-")
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("etcd data dir: %w", err)
	}
	c = &Cluster{dir: dir, dataDir: dataDir, launcher: newLauncher()}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%w (component logs kept in %s)", err, dir)
			c.stop(false)
		}
	}()

	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	etcdPort, etcdPeer, apiPort, cmPort, schedPort, kwokPort := ports[0], ports[1], ports[2], ports[3], ports[4], ports[5]
	creds, err := newPKI(dir)
	if err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	server := "https://127.0.0.1:" + strconv.Itoa(apiPort)
	c.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(c.Kubeconfig, creds.kubeconfig(server), 0o600); err != nil {
		return nil, fmt.Errorf("write kubeconfig: %w", err)
	}
	c.Config = &rest.Config{
		Host: server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData: creds.caPEM, CertData: creds.adminCertPEM, KeyData: creds.adminKeyPEM,
		},
		// The test cluster is private to this process: no client-side
		// throttling slowing tests down.
		QPS: 500, Burst: 1000,
	}
	c.Client, err = kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}

	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(etcdPeer)
	if err := c.spawn("etcd", tools.Etcd,
		"--name=kubetest", "--data-dir="+dataDir,
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL, "--log-level=warn",
	); err != nil {
		return nil, err
	}
	if err := c.await(ctx, "etcd health", func(ctx context.Context) error {
		return httpOK(ctx, http.DefaultClient, etcdURL+"/health")
	}); err != nil {
		return nil, err
	}

	if err := c.spawn("kube-apiserver", tools.APIServer,
		"--etcd-servers="+etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port="+strconv.Itoa(apiPort),
		"--tls-cert-file="+creds.ServingCert, "--tls-private-key-file="+creds.ServingKey,
		"--client-ca-file="+creds.CACert,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+creds.SAPub, "--service-account-signing-key-file="+creds.SAKey,
		"--service-cluster-ip-range=10.96.0.0/16",
		"--authorization-mode=RBAC",
		// The kubernetes Service's endpoints cannot be a loopback address.
		"--endpoint-reconciler-type=none",
		"--enable-priority-and-fairness=false", "--profiling=false",
		// Debian's etcd 3.4 lacks the progress notifications that
		// watch-list streams need. Refused outright, clients list
		// instead; half-served, kwok's watches broke again and again and
		// it saw changes tens of seconds late.
		"--feature-gates=WatchList=false",
	); err != nil {
		return nil, err
	}
	if err := c.await(ctx, "kube-apiserver /readyz", func(ctx context.Context) error {
		_, err := c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err
	}); err != nil {
		return nil, err
	}
	// Established while the other components start.
	if err := c.createLogsCRD(ctx); err != nil {
		return nil, err
	}

	common := []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		"--leader-elect=false", "--bind-address=127.0.0.1",
	}
	if err := c.spawn("kube-controller-manager", tools.ControllerManager, append(common,
		"--secure-port="+strconv.Itoa(cmPort),
		"--service-account-private-key-file="+creds.SAKey,
		"--root-ca-file="+creds.CACert,
		"--use-service-account-credentials=false",
		// Node conditions are checked every second instead of five: new
		// nodes lose their not-ready taint sooner.
		"--node-monitor-period=1s",
	)...); err != nil {
		return nil, err
	}
	if err := c.spawn("kube-scheduler", tools.Scheduler, append(common,
		"--secure-port="+strconv.Itoa(schedPort),
	)...); err != nil {
		return nil, err
	}
	kwokArgs := []string{
		"--kubeconfig=" + c.Kubeconfig, "--manage-all-nodes=true",
		"--cidr=" + opts.PodCIDR, "--node-lease-duration-seconds=40",
	}
	kwokArgs = append(kwokArgs, kwokLogArgs(kwokPort)...)
	if err := c.awaitLogsCRD(ctx); err != nil {
		return nil, err
	}
	for _, s := range tools.Stages {
		kwokArgs = append(kwokArgs, "-c", s)
	}
	if err := c.spawn("kwok", tools.Kwok, kwokArgs...); err != nil {
		return nil, err
	}
	for i := range opts.Nodes {
		name := "kwok-node-" + strconv.Itoa(i)
		if err := c.CreateNode(ctx, name); err != nil {
			return nil, err
		}
	}

	// Their serving certificates are their own, self-signed; only
	// loopback ports of processes this cluster started are asked.
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	for _, w := range []struct {
		what string
		ok   func(ctx context.Context) error
	}{
		{"kube-controller-manager /healthz", func(ctx context.Context) error {
			return httpOK(ctx, insecure, "https://127.0.0.1:"+strconv.Itoa(cmPort)+"/healthz")
		}},
		{"kube-scheduler /healthz", func(ctx context.Context) error {
			return httpOK(ctx, insecure, "https://127.0.0.1:"+strconv.Itoa(schedPort)+"/healthz")
		}},
		{"the default service account", func(ctx context.Context) error {
			_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
			return err
		}},
		{"nodes Ready and untainted", func(ctx context.Context) error { return c.nodesReady(ctx) }},
	} {
		if err := c.await(ctx, w.what, w.ok); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Nodes names the cluster's nodes.
func (c *Cluster) Nodes() []string { return append([]string(nil), c.nodes...) }

// Stop ends every component and removes the cluster's files, except the
// components' logs when SKIFF_KUBETEST_KEEP_LOGS=1 (their directory is
// printed).
func (c *Cluster) Stop() {
	keep := os.Getenv("SKIFF_KUBETEST_KEEP_LOGS") == "1"
	c.stop(!keep)
	if keep {
		fmt.Fprintf(os.Stderr, "kubetest: component logs kept in %s\n", c.dir)
	}
}

func (c *Cluster) stop(removeLogs bool) {
	// Clients first, storage last.
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop(5 * time.Second)
	}
	c.procs = nil
	c.launcher.close()
	os.RemoveAll(c.dataDir)
	if removeLogs {
		os.RemoveAll(c.dir)
	}
}

func (c *Cluster) spawn(name, bin string, args ...string) error {
	p, err := c.launcher.spawn(c.dir, name, bin, args...)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	return nil
}

// await polls ok every 50ms until it returns nil, a component exits, or
// ctx ends; the error then says what was awaited and why it failed last.
func (c *Cluster) await(ctx context.Context, what string, ok func(context.Context) error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		for _, p := range c.procs {
			if err := p.exited(); err != nil {
				return fmt.Errorf("waiting for %s: %w", what, err)
			}
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		last = ok(actx)
		cancel()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last: %v)", what, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// nodesReady is nil once every node of the cluster reports Ready and
// takes pods. A new node carries the node controller's not-ready taint
// for a few seconds after it turned Ready: until that is gone the
// scheduler puts every pod on the nodes that were quicker.
func (c *Cluster) nodesReady(ctx context.Context) error {
	for _, name := range c.nodes {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !NodeReady(n) {
			return fmt.Errorf("node %s is not Ready", name)
		}
		if n.Spec.Unschedulable || len(n.Spec.Taints) > 0 {
			return fmt.Errorf("node %s does not take pods yet (taints %v)", name, n.Spec.Taints)
		}
	}
	return nil
}

// NodeReady reports whether a node's Ready condition is True.
func NodeReady(n *corev1.Node) bool {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady {
			return cond.Status == corev1.ConditionTrue
		}
	}
	return false
}

func httpOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}

// freePorts picks n distinct free loopback ports.
func freePorts(n int) ([]int, error) {
	seen := map[int]bool{}
	var out []int
	for len(out) < n {
		p, err := testenv.Port()
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out, nil
}

// shmOr returns /dev/shm when it is a writable directory, else fallback.
func shmOr(fallback string) string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		if f, err := os.CreateTemp("/dev/shm", ".skiff-probe-"); err == nil {
			f.Close()
			os.Remove(f.Name())
			return "/dev/shm"
		}
	}
	return fallback
}
