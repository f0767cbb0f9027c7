// Package server wires one skiff server: the store, the API, the
// controllers, the edge and the runtimes, in one process. It is the only
// place that knows every part.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/artifact"
	"github.com/skiff-sh/skiff/internal/build"
	"github.com/skiff-sh/skiff/internal/controller"
	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/edgefeed"
	"github.com/skiff-sh/skiff/internal/logs"
	"github.com/skiff-sh/skiff/internal/runtime/docker"
	"github.com/skiff-sh/skiff/internal/runtime/kubernetes"
	"github.com/skiff-sh/skiff/internal/runtime/local"
	"github.com/skiff-sh/skiff/internal/runtime/process"
	"github.com/skiff-sh/skiff/internal/spec"
	"github.com/skiff-sh/skiff/internal/store"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

var _ controller.Runtime = (*supervisor.Supervisor)(nil)

// Config is what `skiff server` takes from its flags.
type Config struct {
	// DataDir holds the store, artifacts, releases, logs and the API
	// socket.
	DataDir string
	// HTTPAddr is where the edge listens. Default ":8080".
	HTTPAddr string
	// TCPAddr is the host (interface) the edge's TCP ports listen on; the
	// ports come from the apps' specs. Default "": every interface.
	TCPAddr string
	// APIAddr is the API's TCP address. Default "127.0.0.1:7070".
	APIAddr string
	// Domain is the base domain: app hello answers on hello.<Domain>.
	// Default "localhost".
	Domain string
	// Runtime is "local" (process and Docker apps side by side) or
	// "kubernetes" (image apps as pods; see Kube).
	Runtime string
	// Kube says which cluster and namespace --runtime kubernetes uses.
	Kube KubeConfig
	// MaxUpload is the largest release artifact accepted, compressed.
	// Default 256 MiB.
	MaxUpload int64
	// BackoffBase and BackoffMax bound restart delays of crashing
	// instances. Defaults 1s and 5m.
	BackoffBase, BackoffMax time.Duration
	// StopGrace is how long an instance has between SIGTERM and SIGKILL.
	// Default 10s.
	StopGrace time.Duration
	// DrainTimeout bounds how long a leaving instance's requests may run.
	// Default 30s.
	DrainTimeout time.Duration
	// EdgeTokenFile holds a second API token that reaches only the edge
	// feed (/v1/edge/...), for edge processes. Default "": none.
	EdgeTokenFile string
	// Edge configures the edge's TLS listener, forwarding headers,
	// timeouts and access log.
	Edge   EdgeConfig
	Logger *slog.Logger
	// Ready, if set, is called once everything listens.
	Ready func()
	// EdgeEngine serves the edge's plain HTTP listener: "raw" (default;
	// serves the common case itself and hands the rest to fasthttp, at
	// nginx's requests per second, see bench/edge/results.md),
	// "fasthttp" or "nethttp". TLS stays on net/http.
	EdgeEngine string
}

// File names inside the data dir.
const (
	SocketName = "api.sock"
	TokenName  = "admin.token"
)

// Run serves until ctx ends. Instances keep running after it returns: the
// data plane outlives the control plane.
func Run(ctx context.Context, cfg Config) error {
	if e := cfg.EdgeEngine; e != "" && e != "fasthttp" && e != "nethttp" && e != "raw" {
		return fmt.Errorf("--edge-engine %q: expected raw, fasthttp or nethttp", e)
	}
	if cfg.Runtime != "" && cfg.Runtime != "local" && cfg.Runtime != "kubernetes" {
		return fmt.Errorf("--runtime %q: expected local or kubernetes", cfg.Runtime)
	}
	kubeImages, err := newKubeImages(cfg)
	if err != nil {
		return err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	tuneGC()
	if cfg.MaxUpload == 0 {
		cfg.MaxUpload = 256 << 20
	}
	// 0711: the unprivileged user apps run as may pass through to its
	// release's files, but list nothing.
	if err := os.MkdirAll(cfg.DataDir, 0o711); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := os.Chmod(cfg.DataDir, 0o711); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	unlock, err := lockDataDir(cfg.DataDir)
	if err != nil {
		return err
	}
	defer unlock()

	st, err := store.Open(filepath.Join(cfg.DataDir, "skiff.db"))
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer st.Close()
	nodeID, err := nodeID(ctx, st)
	if err != nil {
		return err
	}
	tokenHash, err := adminToken(ctx, st, cfg.DataDir, log)
	if err != nil {
		return err
	}
	edgeTokenHash, err := edgeToken(cfg.EdgeTokenFile)
	if err != nil {
		return err
	}
	artifacts, err := artifact.NewStore(filepath.Join(cfg.DataDir, "artifacts"))
	if err != nil {
		return fmt.Errorf("artifact store: %w", err)
	}
	releasesDir := filepath.Join(cfg.DataDir, "releases")
	if err := os.MkdirAll(releasesDir, 0o711); err != nil {
		return fmt.Errorf("create releases dir: %w", err)
	}
	collector, err := logs.NewCollector(logs.Options{Dir: filepath.Join(cfg.DataDir, "logs"), Logger: log.With("component", "logs")})
	if err != nil {
		return fmt.Errorf("log collector: %w", err)
	}
	runtimeDir := filepath.Join(cfg.DataDir, "runtime")
	procDriver, err := process.New(process.Options{StateDir: runtimeDir, NodeID: nodeID, Logger: log.With("component", "process")})
	if err != nil {
		return fmt.Errorf("process runtime: %w", err)
	}
	// Docker is reached lazily ($DOCKER_HOST or the default socket) and
	// asked again at every container start, so it may come up after skiff.
	engine := docker.NewEngine("")
	defer engine.Close()
	dockerDriver, err := docker.New(docker.Options{
		Engine: engine, StateDir: runtimeDir, NodeID: nodeID, Logger: log.With("component", "docker"),
	})
	if err != nil {
		return fmt.Errorf("docker runtime: %w", err)
	}
	// Runs after the supervisor closed (defers run last in, first out).
	defer dockerDriver.Close()
	driver, err := local.New(local.Options{Process: procDriver, Docker: dockerDriver, Logger: log})
	if err != nil {
		return err
	}
	sup, err := supervisor.New(supervisor.Options{
		Driver:      driver,
		StateDir:    runtimeDir,
		Logger:      log.With("component", "supervisor"),
		BackoffBase: cfg.BackoffBase,
		BackoffMax:  cfg.BackoffMax,
		StopGrace:   cfg.StopGrace,
		Logs:        collector,
		TailLog:     logs.TailFile,
		OnEvent: func(e supervisor.Event) {
			msg := e.Message
			if e.Instance != "" {
				msg = "instance " + e.Instance + " " + msg
			}
			if _, err := st.AddEvent(context.WithoutCancel(ctx), store.Event{App: e.App, Release: e.Release, Kind: e.Kind, Message: msg, Data: e.Data}); err != nil {
				log.Error("record event", "kind", e.Kind, "app", e.App, "err", err)
			}
		},
	})
	if err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	defer sup.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	wg.Go(func() { collector.Run(ctx) })
	if err := sup.Start(ctx); err != nil {
		return fmt.Errorf("recover instances: %w", err)
	}
	// Pods' raw logs are left to the kubernetes runtime, which knows
	// which pods are gone (FollowLogs).
	podLogDir := filepath.Join(runtimeDir, "pods")
	var podLogs []string
	if cfg.Runtime == "kubernetes" {
		podLogs = kubernetes.LoggedPods(podLogDir)
	}
	if err := forgetGoneLogs(ctx, sup, collector, podLogs); err != nil {
		return err
	}

	tcpHost, err := tcpHost(cfg.TCPAddr)
	if err != nil {
		return err
	}
	edgeOpts := edge.Options{Logger: log.With("component", "edge"), TCP: edge.TCPOptions{
		Host: tcpHost,
		OnPort: func(ev edge.TCPPortEvent) {
			recordPortEvent(context.WithoutCancel(ctx), st, log, ev)
		},
	}}
	// Metrics live on a registry of their own, never the global default.
	metricsReg := prometheus.NewRegistry()
	metricsReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	closeAccessLog, err := cfg.Edge.apply(&edgeOpts, cfg.DataDir, metricsReg)
	if err != nil {
		return err
	}
	defer closeAccessLog()
	edg := edge.New(edgeOpts)
	defer edg.Close()
	var rt controller.Runtime = sup
	var images controller.Images = build.New(engine, log)
	var admit func(*spec.Spec) (string, string)
	if cfg.Runtime == "kubernetes" {
		krt, err := startKube(ctx, cfg, log)
		if err != nil {
			return err
		}
		defer krt.Close()
		follower, err := krt.FollowLogs(kubernetes.LogOptions{Dir: podLogDir, Sink: collector})
		if err != nil {
			return err
		}
		defer follower.Close()
		rt, images, admit = krt, kubeVolumes{Images: kubeImages, rt: krt}, kubeAdmit
	}
	// The controller's edge is the in-process one and every `skiff edge`
	// that follows this server.
	hub := edgefeed.NewHub(edg, log)
	ctl := controller.New(controller.Config{
		Store: st, Runtime: rt, Edge: hub, Artifacts: artifacts,
		ReleasesDir: releasesDir, Logs: collector, Logger: log,
		DrainTimeout: cfg.DrainTimeout,
		Images:       images,
	})
	if err := ctl.Prime(ctx, 3*time.Second); err != nil {
		return fmt.Errorf("route adopted instances: %w", err)
	}

	apiSrv := api.New(api.Config{
		Store: st, Artifacts: artifacts, Observer: ctl, Logs: collector,
		Domain: cfg.Domain, EdgeURL: edgeURL(cfg.HTTPAddr), MaxUpload: cfg.MaxUpload,
		TokenHash: tokenHash, EdgeTokenHash: edgeTokenHash,
		Logger: log.With("component", "api"), Wake: ctl.Wake, Admit: admit, Edges: hub,
		Metrics: promhttp.HandlerFor(metricsReg, promhttp.HandlerOpts{}),
	})

	apiLn, err := net.Listen("tcp", cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("api: listen on %s (--api-addr): %w", cfg.APIAddr, err)
	}
	sockLn, err := listenSocket(filepath.Join(cfg.DataDir, SocketName))
	if err != nil {
		apiLn.Close()
		return err
	}
	servers := []struct {
		srv *http.Server
		ln  net.Listener
	}{
		{&http.Server{Handler: apiSrv.Handler(), ReadHeaderTimeout: 10 * time.Second}, apiLn},
		{&http.Server{Handler: apiSrv.LocalHandler(), ReadHeaderTimeout: 10 * time.Second}, sockLn},
	}
	for _, s := range servers {
		// Streams (edge routes, events, logs) never end by themselves: at
		// shutdown their requests' context ends, so each client sees its
		// connection close and an edge process notices the server left.
		streams, endStreams := context.WithCancel(context.Background())
		defer endStreams()
		s.srv.BaseContext = func(net.Listener) context.Context { return streams }
		s.srv.RegisterOnShutdown(endStreams)
	}
	errc := make(chan error, len(servers)+3)
	stopEdge, edgeAddr, err := serveEdge(ctx, &wg, errc, edg, cfg.HTTPAddr, cfg.EdgeEngine, cfg.Edge, log)
	if err != nil {
		apiLn.Close()
		sockLn.Close()
		return err
	}
	for _, s := range servers {
		wg.Go(func() {
			if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		})
	}
	wg.Go(func() { ctl.Run(ctx) })
	wg.Go(func() { edg.ServeTCP(ctx) })

	log.Info("skiff server ready",
		"edge", edgeAddr, "api", apiLn.Addr().String(),
		"socket", sockLn.Addr().String(), "domain", cfg.Domain, "data_dir", cfg.DataDir)
	if cfg.Ready != nil {
		cfg.Ready()
	}

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		runErr = fmt.Errorf("serve: %w", runErr)
	}
	cancel()
	shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	for _, s := range servers {
		s.srv.Shutdown(shutdown)
	}
	stopEdge()
	return runErr
}

// forgetGoneLogs stops collecting the log files of instances that ended
// while the server was down; the collector has read what they wrote.
// The ids in keep are someone else's to forget.
func forgetGoneLogs(ctx context.Context, sup *supervisor.Supervisor, collector *logs.Collector, keep []string) error {
	apps, err := sup.Apps(ctx)
	if err != nil {
		return fmt.Errorf("list running apps: %w", err)
	}
	known := map[string]bool{}
	for _, id := range keep {
		known[id] = true
	}
	for _, app := range apps {
		sets, err := sup.Sets(ctx, app)
		if err != nil {
			return fmt.Errorf("observe app %s: %w", app, err)
		}
		for _, set := range sets {
			for _, in := range set.Instances {
				known[in.ID] = true
			}
		}
	}
	for _, id := range collector.Tracked() {
		if !known[id] {
			collector.Untrack(id)
		}
	}
	return nil
}

// edgeURL is the format of app URLs shown to users.
func edgeURL(addr string) string {
	_, port, err := net.SplitHostPort(addr)
	if err != nil || port == "80" {
		return "http://%s"
	}
	return "http://%s:" + port
}

func listenSocket(path string) (net.Listener, error) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale API socket: %w", err)
	}
	// The socket is born 0600, never briefly open to others.
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("api: listen on %s: %w", path, err)
	}
	return ln, nil
}

// lockDataDir keeps two servers off one data dir.
func lockDataDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock data dir: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("data dir %s is in use by another skiff server (%v); stop it or choose --data-dir", dir, err)
	}
	return func() { f.Close() }, nil
}

func nodeID(ctx context.Context, st *store.Store) (string, error) {
	id, err := st.Meta(ctx, "node_id")
	if err == nil {
		return id, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("read node id: %w", err)
	}
	id = randomHex(8)
	if err := st.SetMeta(ctx, "node_id", id); err != nil {
		return "", fmt.Errorf("store node id: %w", err)
	}
	return id, nil
}

// adminToken makes the admin token on first start: written once to
// <data-dir>/admin.token (0600), kept only hashed in the store.
func adminToken(ctx context.Context, st *store.Store, dir string, log *slog.Logger) (string, error) {
	hash, err := st.Meta(ctx, "admin_token_hash")
	if err == nil {
		return hash, nil
	}
	if !errors.Is(err, store.ErrNotFound) {
		return "", fmt.Errorf("read admin token: %w", err)
	}
	token := "skiff_" + randomHex(24)
	path := filepath.Join(dir, TokenName)
	if err := writeFileSync(path, []byte(token+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write admin token: %w", err)
	}
	hash = api.HashToken(token)
	if err := st.SetMeta(ctx, "admin_token_hash", hash); err != nil {
		return "", fmt.Errorf("store admin token: %w", err)
	}
	log.Info("admin token written", "path", path)
	return hash, nil
}

func writeFileSync(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
