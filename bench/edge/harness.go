package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"text/template"
	"time"
)

// benchHost is the host every request asks for: skiff routes the app
// "bench" on bench.localhost; the peers ignore the host.
const benchHost = "bench.localhost"

// target is one thing the load runs through.
type target struct {
	name string
	// h1 and h2 are the base URLs for HTTP/1.1 (plain) and HTTP/2 (TLS);
	// "" means the target has no such listener.
	h1, h2 string
	// pid leads the process group whose memory the report shows; 0 for
	// none.
	pid int
	// rss and hwm are the group's resident and peak memory after the
	// load, in KiB.
	rss, hwm int64
}

// harness holds what a run starts, so that all of it is stopped at the
// end whatever failed.
type harness struct {
	cfg     config
	dir     string
	log     *slog.Logger
	procs   []*exec.Cmd
	cleanup []func()

	cert, key, certKey string
	backend            string // host:port of the deployed backend instance
	targets            []*target
	versions           map[string]string
}

func (h *harness) setUp(ctx context.Context) error {
	h.versions = map[string]string{}
	if err := h.makeCert(); err != nil {
		return err
	}
	backendBin := filepath.Join(h.dir, "app", "backend")
	if err := os.MkdirAll(filepath.Dir(backendBin), 0o755); err != nil {
		return err
	}
	if err := h.cmd(ctx, "", nil, "go", "build", "-o", backendBin, "./bench/edge/backend").Run(); err != nil {
		return fmt.Errorf("build backend: %w", err)
	}
	spec, err := os.ReadFile("bench/edge/conf/skiff.yaml")
	if err != nil {
		return fmt.Errorf("read app spec: %w", err)
	}
	if err := os.WriteFile(filepath.Join(h.dir, "app", "skiff.yaml"), spec, 0o644); err != nil {
		return err
	}

	engines := h.cfg.engines
	if len(engines) == 0 {
		engines = []string{""}
	}
	for i, engine := range engines {
		name := "skiff"
		if engine != "" {
			name = "skiff-" + engine
		}
		if !h.wants("skiff") {
			break
		}
		t, err := h.startSkiff(ctx, name, engine, i == 0)
		if err != nil {
			return err
		}
		h.targets = append(h.targets, t)
	}
	if h.backend == "" {
		// No skiff target: run the backend on its own for the peers.
		port := freePort()
		cmd := h.cmd(ctx, "backend", []string{"PORT=" + port}, backendBin)
		if err := h.start(cmd); err != nil {
			return fmt.Errorf("start backend: %w", err)
		}
		h.backend = "127.0.0.1:" + port
	}

	if h.wants("noproxy") {
		// The HTTP/2 baseline is the same binary serving TLS itself;
		// HTTP/1.1 goes straight to the instance the proxies use.
		tlsAddr := "127.0.0.1:" + freePort()
		cmd := h.cmd(ctx, "backend-tls", []string{"PORT=" + freePort(), "BENCH_TLS_ADDR=" + tlsAddr,
			"BENCH_TLS_CERT=" + h.cert, "BENCH_TLS_KEY=" + h.key}, backendBin)
		if err := h.start(cmd); err != nil {
			return fmt.Errorf("start TLS backend: %w", err)
		}
		h.targets = append([]*target{{name: "noproxy", h1: "http://" + h.backend, h2: "https://" + tlsAddr}}, h.targets...)
	}
	for _, p := range []string{"nginx", "haproxy", "caddy"} {
		if !h.wants(p) {
			continue
		}
		t, err := h.startPeer(ctx, p)
		if err != nil {
			return err
		}
		h.targets = append(h.targets, t)
	}
	if h.wants("go-minimal") {
		t, err := h.startMinimal(ctx)
		if err != nil {
			return err
		}
		h.targets = append(h.targets, t)
	}
	for _, t := range h.targets {
		if err := waitServing(ctx, t); err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
	}
	return nil
}

func (h *harness) wants(name string) bool {
	for _, t := range h.cfg.targets {
		if t == name {
			return true
		}
	}
	return false
}

// startSkiff runs a real `skiff server` with its own data dir and deploys
// the backend as the app "bench". The first server's instance is the
// backend every other target uses, so all of them proxy to one process.
func (h *harness) startSkiff(ctx context.Context, name, engine string, first bool) (*target, error) {
	skiff, err := filepath.Abs(h.cfg.skiff)
	if err != nil {
		return nil, err
	}
	help, _ := exec.CommandContext(ctx, skiff, "server", "--help").CombinedOutput()
	data := filepath.Join(h.dir, name)
	httpAddr := "127.0.0.1:" + freePort()
	args := []string{"server", "--data-dir", data, "--http-addr", httpAddr, "--api-addr", "127.0.0.1:" + freePort()}
	t := &target{name: name, h1: "http://" + httpAddr}
	if bytes.Contains(help, []byte("--https-addr")) {
		tlsAddr := "127.0.0.1:" + freePort()
		args = append(args, "--https-addr", tlsAddr, "--tls-cert", h.cert, "--tls-key", h.key)
		t.h2 = "https://" + tlsAddr
	} else {
		h.log.Warn("this skiff has no --https-addr: its HTTP/2 cells are left empty", "target", name)
	}
	env := []string{"SKIFF_DATA_DIR=" + data}
	if engine != "" {
		env = append(env, "SKIFF_EDGE_ENGINE="+engine)
	}
	cmd := h.cmd(ctx, name, env, skiff, args...)
	if err := h.start(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	t.pid = cmd.Process.Pid
	// The app outlives the server by design: destroy it before the
	// server stops (cleanups run before processes stop).
	h.cleanup = append(h.cleanup, func() {
		c := exec.Command(skiff, "destroy", "bench")
		c.Env = append(os.Environ(), env...)
		c.Run()
		deadline := time.Now().Add(15 * time.Second)
		for time.Now().Before(deadline) {
			c := exec.Command(skiff, "status", "bench")
			c.Env = append(os.Environ(), env...)
			if c.Run() != nil {
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
	})
	if err := poll(ctx, 30*time.Second, func() error {
		c := exec.CommandContext(ctx, skiff, "apps")
		c.Env = append(os.Environ(), env...)
		return c.Run()
	}); err != nil {
		return nil, fmt.Errorf("%s did not start (log: %s): %w", name, h.logPath(name), err)
	}
	deploy := h.cmd(ctx, name+"-deploy", env, skiff, "deploy", "-f", filepath.Join(h.dir, "app", "skiff.yaml"), "--wait", "--timeout", "2m")
	if err := deploy.Run(); err != nil {
		return nil, fmt.Errorf("deploy to %s (log: %s): %w", name, h.logPath(name+"-deploy"), err)
	}
	if first {
		c := exec.CommandContext(ctx, skiff, "status", "bench", "-o", "json")
		c.Env = append(os.Environ(), env...)
		out, err := c.Output()
		if err != nil {
			return nil, fmt.Errorf("skiff status: %w", err)
		}
		var st struct {
			Sets []struct {
				Instances []struct {
					Endpoint string `json:"endpoint"`
					State    string `json:"state"`
				} `json:"instances"`
			} `json:"sets"`
		}
		if err := json.Unmarshal(out, &st); err != nil {
			return nil, fmt.Errorf("skiff status: %w", err)
		}
		for _, s := range st.Sets {
			for _, in := range s.Instances {
				if in.Endpoint != "" {
					h.backend = strings.TrimPrefix(in.Endpoint, "http://")
				}
			}
		}
		if h.backend == "" {
			return nil, fmt.Errorf("skiff status shows no instance endpoint: %s", out)
		}
		if v, err := exec.CommandContext(ctx, "go", "version").Output(); err == nil {
			h.versions["go"] = strings.TrimSpace(string(v))
		}
		if v, err := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty").Output(); err == nil {
			h.versions["skiff"] = "commit " + strings.TrimSpace(string(v))
		}
	}
	return t, nil
}

// peerParams fill the {{...}} fields of the configs in conf/.
type peerParams struct {
	Dir, Backend, HTTPPort, TLSPort, Cert, Key, CertKey string
	Root                                                bool
}

func (h *harness) startPeer(ctx context.Context, name string) (*target, error) {
	p := peerParams{Dir: h.dir, Backend: h.backend, HTTPPort: freePort(), TLSPort: freePort(),
		Cert: h.cert, Key: h.key, CertKey: h.certKey, Root: os.Geteuid() == 0}
	file := map[string]string{"nginx": "nginx.conf", "haproxy": "haproxy.cfg", "caddy": "Caddyfile"}[name]
	conf := filepath.Join(h.dir, file)
	if err := renderConfig(filepath.Join("bench/edge/conf", file), conf, p); err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	switch name {
	case "nginx":
		for _, d := range []string{"nginx-body", "nginx-proxy", "nginx-fastcgi", "nginx-uwsgi", "nginx-scgi"} {
			os.MkdirAll(filepath.Join(h.dir, d), 0o700)
		}
		cmd = h.cmd(ctx, name, nil, "nginx", "-p", h.dir, "-c", conf)
		h.versions[name] = versionOf(ctx, "nginx", "-v")
	case "haproxy":
		cmd = h.cmd(ctx, name, nil, "haproxy", "-db", "-f", conf)
		h.versions[name] = versionOf(ctx, "haproxy", "-v")
	case "caddy":
		bin, err := h.caddy(ctx)
		if err != nil {
			return nil, err
		}
		cmd = h.cmd(ctx, name, []string{"XDG_DATA_HOME=" + h.dir, "XDG_CONFIG_HOME=" + h.dir, "HOME=" + h.dir},
			bin, "run", "--adapter", "caddyfile", "--config", conf)
		h.versions[name] = "caddy " + caddyVersion + " (go install)"
	}
	if err := h.start(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &target{name: name, h1: "http://127.0.0.1:" + p.HTTPPort, h2: "https://127.0.0.1:" + p.TLSPort, pid: cmd.Process.Pid}, nil
}

// startMinimal runs bench/edge/minimal, the floor of what a proxy in Go
// reaches here, for HTTP/1.1 only.
func (h *harness) startMinimal(ctx context.Context) (*target, error) {
	bin := filepath.Join(h.dir, "minimal")
	if err := h.cmd(ctx, "", nil, "go", "build", "-o", bin, "./bench/edge/minimal").Run(); err != nil {
		return nil, fmt.Errorf("build go-minimal: %w", err)
	}
	addr := "127.0.0.1:" + freePort()
	cmd := h.cmd(ctx, "go-minimal", nil, bin, addr, h.backend, filepath.Join(h.dir, "go-minimal-access.log"))
	if err := h.start(cmd); err != nil {
		return nil, fmt.Errorf("start go-minimal: %w", err)
	}
	h.versions["go-minimal"] = "bench/edge/minimal, built with this Go"
	return &target{name: "go-minimal", h1: "http://" + addr, pid: cmd.Process.Pid}, nil
}

// caddy returns the pinned Caddy, installing it into the tools dir once.
func (h *harness) caddy(ctx context.Context) (string, error) {
	bin := filepath.Join(h.cfg.toolsDir, "caddy")
	// go install leaves Caddy's own version command saying "unknown";
	// the build info names the module version.
	if out, err := exec.CommandContext(ctx, "go", "version", "-m", bin).Output(); err == nil && caddyBuild.Match(out) {
		return bin, nil
	}
	h.log.Info("installing Caddy", "version", caddyVersion, "dir", h.cfg.toolsDir)
	cmd := h.cmd(ctx, "caddy-install", []string{"GOBIN=" + h.cfg.toolsDir}, "go", "install", "github.com/caddyserver/caddy/v2/cmd/caddy@"+caddyVersion)
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("install caddy (log: %s): %w", h.logPath("caddy-install"), err)
	}
	return bin, nil
}

const caddyVersion = "v2.10.2"

var caddyBuild = regexp.MustCompile(`(?m)^\s+mod\s+github.com/caddyserver/caddy/v2\s+` + regexp.QuoteMeta(caddyVersion) + `\s`)

func renderConfig(src, dst string, p peerParams) error {
	tmpl, err := template.ParseFiles(src)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	if err := tmpl.Execute(f, p); err != nil {
		f.Close()
		return fmt.Errorf("render %s: %w", src, err)
	}
	return f.Close()
}

// cmd makes a command whose output goes to <dir>/<name>.log (or nowhere
// when name is empty), in its own process group.
func (h *harness) cmd(ctx context.Context, name string, env []string, bin string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if name != "" {
		if f, err := os.OpenFile(h.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
			cmd.Stdout, cmd.Stderr = f, f
			h.cleanup = append(h.cleanup, func() { f.Close() })
		}
	} else {
		cmd.Stderr = os.Stderr
	}
	return cmd
}

func (h *harness) logPath(name string) string { return filepath.Join(h.dir, name+".log") }

func (h *harness) start(cmd *exec.Cmd) error {
	if err := cmd.Start(); err != nil {
		return err
	}
	h.procs = append(h.procs, cmd)
	return nil
}

// stopAll runs the cleanups (newest first), then stops every process the
// harness started, by its own process group: SIGTERM, then SIGKILL after
// a grace period.
func (h *harness) stopAll() {
	for i := len(h.cleanup) - 1; i >= 0; i-- {
		if i < len(h.cleanup) {
			h.cleanup[i]()
		}
	}
	for i := len(h.procs) - 1; i >= 0; i-- {
		cmd := h.procs[i]
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

// makeCert writes a self-signed certificate for 127.0.0.1 and
// *.localhost, as PEM files and as the combined file HAProxy wants.
func (h *harness) makeCert() error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: benchHost},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		DNSNames:     []string{benchHost, "*.localhost", "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
	h.cert, h.key, h.certKey = filepath.Join(h.dir, "cert.pem"), filepath.Join(h.dir, "key.pem"), filepath.Join(h.dir, "certkey.pem")
	for path, b := range map[string][]byte{h.cert: certPEM, h.key: keyPEM, h.certKey: append(certPEM, keyPEM...)} {
		// 0644: skiff reads the key as root, nginx workers and the app
		// user may not; nothing here is a secret worth keeping.
		if err := os.WriteFile(path, b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// waitServing waits until t answers /1k with 1 KiB on each listener it
// has, so that no round measures a proxy still starting.
func waitServing(ctx context.Context, t *target) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
	}}
	defer client.CloseIdleConnections()
	for _, base := range []string{t.h1, t.h2} {
		if base == "" {
			continue
		}
		err := poll(ctx, 30*time.Second, func() error {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/1k", nil)
			req.Host = benchHost
			res, err := client.Do(req)
			if err != nil {
				return err
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != http.StatusOK || len(b) != 1<<10 {
				return fmt.Errorf("GET %s/1k: %s, %d bytes", base, res.Status, len(b))
			}
			if strings.HasPrefix(base, "https") && res.ProtoMajor != 2 {
				return fmt.Errorf("GET %s/1k: %s, not HTTP/2", base, res.Proto)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("not serving: %w", err)
		}
	}
	return nil
}

func poll(ctx context.Context, limit time.Duration, f func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := f()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freePort returns a loopback port nothing listens on now.
func freePort() string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("no free loopback port: %v", err))
	}
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

func versionOf(ctx context.Context, bin string, args ...string) string {
	out, _ := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
