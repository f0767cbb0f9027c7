package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/testenv"
)

// tlsLine is one TLS connection through the edge's passthrough port.
type tlsLine struct {
	c *tls.Conn
	r *bufio.Reader
}

// dialSNI connects to addr asking for server name, and completes the
// handshake with whoever answers, checking its certificate against roots.
func dialSNI(addr, name string, roots *x509.CertPool) (*tlsLine, error) {
	d := &net.Dialer{Timeout: 2 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots})
	if err != nil {
		return nil, err
	}
	return &tlsLine{c: c, r: bufio.NewReader(c)}, nil
}

// ask sends a line and returns the release and instance that answered.
func (l *tlsLine) ask(line string) (int, string, error) {
	tc := &tcpClient{c: l.c, r: l.r}
	return tc.ask(line)
}

// TestTLSPassthroughBySNI deploys two apps that share one TCP port with
// tls: passthrough, each under its own server name and each terminating
// TLS itself, through a real server: a client asking for a.example gets
// app a (its certificate, its instance), b.example gets app b, a name no
// app lists and a ClientHello without a name are refused, and deploying
// b under load on a breaks no connection of a, neither open nor new.
func TestTLSPassthroughBySNI(t *testing.T) {
	s := newServer(t, "--tcp-addr", "127.0.0.1", "--drain-timeout", "3s")
	s.start()
	port := testenv.FreePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ctx := context.Background()

	// Each app has its own certificate for its own name, which only its
	// clients trust: a handshake that verifies proves which app answered.
	apps := map[string]bundle{}
	roots := map[string]*x509.CertPool{}
	for _, app := range []string{"a", "b"} {
		dir := appDir(t, fmt.Sprintf(`name: tls%s
command: ["./testapp"]
env: {ECHO_TCP: "1", ECHO_TLS_CERT: cert.pem, ECHO_TLS_KEY: key.pem}
health: {tcp: true, interval: 100ms, timeout: 100ms, threshold: 1}
tcp: [{port: %d, tls: passthrough, hosts: [%s.example]}]
`, app, port, app))
		cert := testenv.SelfSigned(t, app+".example")
		roots[app] = cert.Roots
		// Readable by the unprivileged user apps run as.
		for name, b := range map[string][]byte{"cert.pem": cert.CertPEM, "key.pem": cert.KeyPEM} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		apps[app] = pack(t, dir)
		rel, err := deploy(ctx, s.client, apps[app])
		if err != nil {
			t.Fatalf("deploy tls%s: %v", app, err)
		}
		if r := waitStatus(t, s.client, "tls"+app, rel.Number, 60*time.Second); r.Status != "complete" {
			t.Fatalf("deploy tls%s: %s: %s", app, r.Status, r.Message)
		}
	}
	// instances lists the ids of app's instances.
	instances := func(app string) map[string]bool {
		t.Helper()
		st, err := s.client.App(ctx, app)
		if err != nil {
			t.Fatal(err)
		}
		ids := map[string]bool{}
		for _, set := range st.Sets {
			for _, in := range set.Instances {
				ids[in.ID] = true
			}
		}
		return ids
	}
	// reach checks that a client asking for app's name reaches app: the
	// handshake verifies app's certificate, and one of its instances
	// answers.
	reach := func(app string) (*tlsLine, int) {
		t.Helper()
		var l *tlsLine
		var rel int
		var inst string
		// The edge opens the port once it has the routes.
		eventually(t, 10*time.Second, func() error {
			var err error
			if l, err = dialSNI(addr, app+".example", roots[app]); err != nil {
				return err
			}
			if rel, inst, err = l.ask("hello " + app); err != nil {
				l.c.Close()
			}
			return err
		})
		if !instances("tls" + app)[inst] {
			t.Fatalf("%s.example was answered by instance %s, not one of app tls%s", app, inst, app)
		}
		return l, rel
	}
	la, relA := reach("a")
	defer la.c.Close()
	lb, _ := reach("b")
	lb.c.Close()

	refused := map[string]func() (*tlsLine, error){
		"c.example": func() (*tlsLine, error) { return dialSNI(addr, "c.example", roots["a"]) },
		"no name":   func() (*tlsLine, error) { return dialNoSNI(addr) },
	}
	for name, dial := range refused {
		l, err := dial()
		if err == nil {
			l.c.Close()
			t.Errorf("a ClientHello with %s got through; want the connection refused", name)
		} else if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("a ClientHello with %s: %v; want the edge to close the connection", name, err)
		}
	}

	// Deploy b while connections to a come and go and one stays open.
	load := startConnLoad(2, 120*time.Second, func() error {
		l, err := dialSNI(addr, "a.example", roots["a"])
		if err != nil {
			return err
		}
		defer l.c.Close()
		_, _, err = l.ask("load")
		return err
	})
	defer load.stop() // on an early failure; stop may run twice
	rel2, err := deploy(ctx, s.client, apps["b"])
	if err != nil {
		t.Fatal(err)
	}
	final := waitStatus(t, s.client, "tlsb", rel2.Number, 60*time.Second)
	ok, failed, firstErr := load.stop()
	if final.Status != "complete" {
		t.Fatalf("deploy of tlsb: %s: %s", final.Status, final.Message)
	}
	if failed != 0 {
		t.Errorf("%d of %d connections to a failed while b deployed; first: %v", failed, ok+failed, firstErr)
	}
	t.Logf("%d connections to a.example while b deployed, %d failed", ok+failed, failed)
	if ok < 20 {
		t.Errorf("only %d connections to a succeeded while b deployed; the load did not run", ok)
	}
	if r, _, err := la.ask("still there"); err != nil || r != relA {
		t.Errorf("the open connection to a after b's deploy: release %d, %v; want release %d answering", r, err, relA)
	}
	eventually(t, 10*time.Second, func() error {
		l, err := dialSNI(addr, "b.example", roots["b"])
		if err != nil {
			return err
		}
		defer l.c.Close()
		r, _, err := l.ask("after")
		if err == nil && r != rel2.Number {
			err = fmt.Errorf("b.example answered by release %d, want %d", r, rel2.Number)
		}
		return err
	})
}

// dialNoSNI connects to addr with a ClientHello that names no server.
// It skips verification, since no certificate could match: any
// handshake that completes is the failure the caller looks for.
func dialNoSNI(addr string) (*tlsLine, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true})
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	if err := tc.Handshake(); err != nil {
		c.Close()
		return nil, err
	}
	return &tlsLine{c: tc, r: bufio.NewReader(tc)}, nil
}
