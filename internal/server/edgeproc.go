package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	clientset "k8s.io/client-go/kubernetes"

	"github.com/skiff-sh/skiff/internal/client"
	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/edgefeed"
	"github.com/skiff-sh/skiff/internal/endpointslices"
	"github.com/skiff-sh/skiff/internal/runtime/kubernetes"
)

var _ edgefeed.Source = (*client.Client)(nil)

// EdgeProcConfig is what `skiff edge` takes: an edge in a process of its
// own, fed routes by a skiff server's API.
type EdgeProcConfig struct {
	// Server is the control plane's API URL, e.g. http://10.0.0.1:7070.
	// Required.
	Server string
	// Token is the API token.
	Token string
	// Name tells this edge apart from others on the control plane.
	// Default: the host name.
	Name string
	// HTTPAddr is the plain HTTP listener. Default ":8080".
	HTTPAddr string
	// TCPAddr is the host the apps' TCP ports listen on. Default: every
	// interface.
	TCPAddr string
	// MetricsAddr serves GET /metrics (Prometheus) and GET /readyz (200
	// once the edge serves routes). Default "": none.
	MetricsAddr string
	// EdgeEngine is what serves the plain listener: raw (default),
	// fasthttp or nethttp.
	EdgeEngine string
	// KubeNamespace, when set, makes the edge find the ready pods of
	// releases that run on a cluster itself, from the EndpointSlices of
	// skiff's Services in this namespace, so it follows pods as they come
	// and go even while the control plane is away. Default "": the
	// control plane's backends only.
	KubeNamespace string
	// Kubeconfig reaches the cluster; "" means the pod's service account
	// inside a cluster, else $KUBECONFIG or ~/.kube/config.
	Kubeconfig string
	// Edge holds the TLS listener, timeouts, trusted proxies and access
	// log; the access log defaults to standard output.
	Edge   EdgeConfig
	Logger *slog.Logger
	// Ready, if set, is called once the listeners are open.
	Ready func()
}

// RunEdge runs an edge process until ctx ends: it follows the control
// plane's routes, and keeps serving the last ones while the control plane
// is away.
func RunEdge(ctx context.Context, cfg EdgeProcConfig) error {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Server == "" {
		return errors.New("skiff edge needs --server: the API address of the skiff server whose routes it serves")
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = ":8080"
	}
	if cfg.Edge.AccessLog == "" {
		cfg.Edge.AccessLog = "-"
	}
	tuneGC()
	c, err := client.New(cfg.Server, cfg.Token)
	if err != nil {
		return fmt.Errorf("--server: %w", err)
	}
	tcpHost, err := tcpHost(cfg.TCPAddr)
	if err != nil {
		return err
	}
	opts := edge.Options{Logger: log.With("component", "edge"), TCP: edge.TCPOptions{Host: tcpHost}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	closeLog, err := cfg.Edge.apply(&opts, "", reg)
	if err != nil {
		return err
	}
	defer closeLog()
	edg := edge.New(opts)
	defer edg.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	errc := make(chan error, 4)
	stop, addr, err := serveEdge(ctx, &wg, errc, edg, cfg.HTTPAddr, cfg.EdgeEngine, cfg.Edge, log)
	if err != nil {
		return err
	}
	defer stop()
	if cfg.MetricsAddr != "" {
		ln, err := net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("metrics: listen on %s (--metrics-addr): %w", cfg.MetricsAddr, err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		mux.HandleFunc("GET /readyz", edgeReadiness(edg, cfg.Server))
		ms := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		wg.Go(func() {
			if err := ms.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		})
		defer ms.Close()
	}
	var target edgefeed.Target = edg
	if cfg.KubeNamespace != "" {
		d, err := discoverPods(ctx, &wg, edg, cfg.KubeNamespace, cfg.Kubeconfig, log)
		if err != nil {
			return err
		}
		target = d
	}
	wg.Go(func() { edg.ServeTCP(ctx) })
	wg.Go(func() { edgefeed.Follow(ctx, c, cfg.Name, target, log) })
	log.Info("skiff edge ready", "edge", addr, "server", cfg.Server, "name", cfg.Name)
	if cfg.Ready != nil {
		cfg.Ready()
	}
	select {
	case <-ctx.Done():
		return nil
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	}
}

// edgeReadiness answers GET /readyz: 200 once the edge serves routes
// from the control plane, 503 before. An edge that started while the
// control plane was away has no routes and would answer every request
// 404, so a load balancer should send it none; one that lost the
// control plane later keeps its routes and stays ready.
func edgeReadiness(edg *edge.Edge, server string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if g := edg.Generation(); g > 0 {
			fmt.Fprintf(w, "ready: serving routes of generation %d\n", g)
			return
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintf(w, "not ready: no routes yet from %s\n", server)
	}
}

// discoverSync bounds how long an edge waits at start for its first list
// of EndpointSlices. A cluster API that does not answer by then does not
// keep the edge from serving: the watch goes on trying, and until it
// lists, the control plane's backends serve.
const discoverSync = 10 * time.Second

// discoverPods makes edg take the ready pods of releases on a cluster
// from the EndpointSlices in namespace, refreshed on every change until
// ctx ends.
func discoverPods(ctx context.Context, wg *sync.WaitGroup, edg *edge.Edge, namespace, kubeconfig string, log *slog.Logger) (*edgefeed.Discovering, error) {
	rc, err := kubernetes.RESTConfig(kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("--kube-namespace: %w", err)
	}
	client, err := clientset.NewForConfig(rc)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	w := endpointslices.New(client, namespace, log)
	changed := w.Notify()
	sctx, cancel := context.WithTimeout(ctx, discoverSync)
	err = w.Start(sctx)
	cancel()
	if err != nil {
		log.Error("the cluster's endpointslices are not listed yet; serving the control plane's backends until they are", "api", rc.Host, "err", err)
	}
	d := edgefeed.NewDiscovering(edg, w)
	wg.Go(func() {
		defer w.Close()
		d.RefreshOn(ctx, changed)
	})
	return d, nil
}

// serveEdge opens the edge's plain listener (and TLS listener, when
// configured) and serves them until the returned stop is called; errors
// of a listener go to errc. It returns the plain listener's address.
func serveEdge(ctx context.Context, wg *sync.WaitGroup, errc chan<- error, edg *edge.Edge, httpAddr, engine string, ec EdgeConfig, log *slog.Logger) (stop func(), addr string, err error) {
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return nil, "", fmt.Errorf("edge: listen on %s (--http-addr): %w", httpAddr, err)
	}
	tlsLn, err := ec.listenTLS()
	if err != nil {
		ln.Close()
		return nil, "", err
	}
	var servers []*http.Server
	serve := func(srv *http.Server, l net.Listener) {
		servers = append(servers, srv)
		wg.Go(func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		})
	}
	var fast *edge.FastServer
	if engine == "nethttp" {
		serve(edg.NewServer(), ln)
	} else {
		fast = edg.NewRawServer() // the default
		if engine == "fasthttp" {
			fast = edg.NewFastServer()
		}
		wg.Go(func() {
			if err := fast.Serve(ln); err != nil {
				errc <- err
			}
		})
	}
	if tlsLn != nil {
		// A TLS listener offering h2 speaks HTTP/2 or HTTP/1.1 as ALPN
		// chose.
		serve(edg.NewServer(), tlsLn)
		log.Info("edge serves TLS", "addr", tlsLn.Addr().String())
	}
	stop = func() {
		shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		for _, s := range servers {
			s.Shutdown(shutdown)
		}
		if fast != nil {
			fast.Shutdown(shutdown)
		}
	}
	return stop, ln.Addr().String(), nil
}
