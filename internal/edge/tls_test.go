package edge

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/testenv"
)

// selfSignedFiles writes a certificate for 127.0.0.1 and app.localhost and its
// key to dir, and returns their paths and a pool trusting it.
func selfSignedFiles(t *testing.T) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	c := testenv.SelfSigned(t, "app.localhost", "127.0.0.1")
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, c.CertPEM, 0o600)
	os.WriteFile(keyFile, c.KeyPEM, 0o600)
	return certFile, keyFile, c.Roots
}

// serveEdgeTLS serves e on a TLS listener as `skiff server --https-addr`
// does, and returns its address and a pool trusting its certificate.
func serveEdgeTLS(t *testing.T, e *Edge) (string, *x509.CertPool) {
	t.Helper()
	certFile, keyFile, roots := selfSignedFiles(t)
	cfg, err := LoadTLS(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := e.NewServer()
	go srv.Serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), roots
}

func TestTLSServesHTTP2AndHTTP1(t *testing.T) {
	e := New(Options{Logger: quietLogger})
	proto := make(chan string, 2)
	be := newBackendFunc(t, "b", func(w http.ResponseWriter, r *http.Request) {
		proto <- r.Header.Get("X-Forwarded-Proto")
		io.WriteString(w, "b")
	})
	e.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "app.localhost", App: "app", Backends: []Backend{be}}}})
	addr, roots := serveEdgeTLS(t, e)
	tests := []struct {
		name      string
		h2        bool
		wantMajor int
	}{{"HTTP/2 by ALPN", true, 2}, {"HTTP/1.1 by ALPN", false, 1}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "app.localhost"}, ForceAttemptHTTP2: tc.h2}
			if !tc.h2 {
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/", nil)
			req.Host = "app.localhost"
			res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.ProtoMajor != tc.wantMajor || string(body) != "b" {
				t.Fatalf("got %s %q, want HTTP/%d and the app's answer", res.Proto, body, tc.wantMajor)
			}
			if p := <-proto; p != "https" {
				t.Fatalf("app saw X-Forwarded-Proto %q, want https", p)
			}
		})
	}
}

func TestLoadTLSErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pem")
	os.WriteFile(bad, []byte("not pem"), 0o600)
	for _, tc := range []struct{ name, cert, key string }{
		{"missing key", bad, ""},
		{"not PEM", bad, bad},
		{"no such file", filepath.Join(dir, "nope.pem"), bad},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := LoadTLS(tc.cert, tc.key); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

// h2specPath finds h2spec on PATH or where scripts/test-setup.sh puts it.
func h2specPath() string {
	if p, err := exec.LookPath("h2spec"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, ".cache", "skiff-tools", "bin", "h2spec")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// TestH2Spec runs the HTTP/2 conformance suite against the edge's TLS
// listener, proxying to a real app; every case must pass.
func TestH2Spec(t *testing.T) {
	bin := h2specPath()
	if bin == "" {
		if testenv.RequireIntegration() {
			t.Fatal("h2spec is missing; run scripts/test-setup.sh")
		}
		t.Skip("h2spec is missing; run scripts/test-setup.sh")
	}
	e := New(Options{Logger: quietLogger})
	// h2spec skips its negative-window case (6.9.2/2) for answers under
	// 5 bytes.
	be := newBackend(t, "an answer long enough for every h2spec case")
	e.Apply(&Snapshot{Generation: 1, Routes: []Route{{Host: "127.0.0.1", App: "app", Backends: []Backend{be}}}})
	addr, _ := serveEdgeTLS(t, e)
	_, port, _ := net.SplitHostPort(addr)
	out, err := exec.Command(bin, "-h", "127.0.0.1", "-p", port, "-t", "-k", "-o", "5", "-j", filepath.Join(t.TempDir(), "report.xml")).CombinedOutput()
	// Go's own HTTP/2 server fails 6.5.3/1 (repeated settings), 8.1.2.2/1
	// and /2 (connection-specific fields and TE answered instead of
	// reset), and 4.2/3 when it advertises frames over 16 KiB; the edge's
	// h2Guard and h2MaxFrameSize fix them. Every case must pass.
	const knownGoServerFailures = 0
	m := regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("h2spec: %v, no summary:\n%s", err, out)
	}
	total, _ := strconv.Atoi(string(m[1]))
	passed, _ := strconv.Atoi(string(m[2]))
	failed, _ := strconv.Atoi(string(m[4]))
	if total == 0 || passed != total || failed > knownGoServerFailures {
		t.Fatalf("h2spec: %s, want every case run and passed:\n%s", m[0], out)
	}
	t.Logf("h2spec: %s", m[0])
}
