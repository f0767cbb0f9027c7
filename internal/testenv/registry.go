package testenv

import (
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"golang.org/x/crypto/bcrypt"
)

// RegistryOptions choose how a test registry is reached and how it
// authenticates.
type RegistryOptions struct {
	// TLS makes the registry serve HTTPS with a certificate of its own
	// for 127.0.0.1 and registry.club.test (Registry.Client trusts it),
	// instead of plain HTTP.
	TLS bool
	// Token makes the registry answer with a bearer token challenge
	// whose token server hands any client a token for what it asks,
	// as public registries do for anonymous pulls.
	Token bool
	// User and Password, when set, make the registry demand them with
	// HTTP basic authentication (an htpasswd file).
	User, Password string
}

// Registry is a real image registry (the CNCF distribution registry,
// Debian's docker-registry) serving on a loopback port.
type Registry struct {
	// Host is the registry's host:port, which image references start
	// with.
	Host string
	// Client is a transport that trusts the registry's certificate.
	Client *http.Transport
	tokens atomic.Int64
	opts   RegistryOptions
}

// registryService names the test registry in its tokens.
const registryService = "skiff-test-registry"

// RequireRegistry starts docker-registry on a free 127.0.0.1 port, its
// configuration and storage in a temporary directory, waits until it
// answers and stops it at cleanup. Without the binary t is skipped with
// how to get it, or fails under SKIFF_REQUIRE_INTEGRATION=1.
func RequireRegistry(t testing.TB, opts RegistryOptions) *Registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		msg := "the image registry docker-registry is needed (Debian's docker-registry; scripts/test-setup.sh installs it)"
		if RequireIntegration() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	r := &Registry{opts: opts, Client: http.DefaultTransport.(*http.Transport).Clone()}
	dir := t.TempDir()
	auth, scheme := "", "http"
	if opts.TLS {
		cert := SelfSigned(t, "registry.club.test", "127.0.0.1")
		certPath, keyPath := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
		if err := os.WriteFile(certPath, cert.CertPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(keyPath, cert.KeyPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		r.Client.TLSClientConfig = &tls.Config{RootCAs: cert.Roots}
		auth, scheme = fmt.Sprintf("  tls:\n    certificate: %s\n    key: %s\n", certPath, keyPath), "https"
	}
	switch {
	case opts.Token:
		auth += r.tokenAuth(t, dir)
	case opts.User != "":
		hash, err := bcrypt.GenerateFromPassword([]byte(opts.Password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(path, []byte(opts.User+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		auth += fmt.Sprintf("auth:\n  htpasswd:\n    realm: %s\n    path: %s\n", registryService, path)
	}
	// A port free a moment ago may be taken before the registry binds
	// it: try a few.
	var lastErr error
	for range 3 {
		port := FreePort(t)
		r.Host = fmt.Sprintf("127.0.0.1:%d", port)
		cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n  secret: %s\n%s",
			filepath.Join(dir, "data"), r.Host, randomHex(t), auth)
		path := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		if lastErr = r.start(t, bin, path, scheme, filepath.Join(dir, "registry.log")); lastErr == nil {
			return r
		}
	}
	t.Fatalf("start docker-registry: %v", lastErr)
	return nil
}

// start runs the registry with config file cfg and waits until /v2/
// answers, or returns why it did not.
func (r *Registry) start(t testing.TB, bin, cfg, scheme, logPath string) error {
	logf, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The registry must not outlive a test binary that dies.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	stop := func() {
		cmd.Process.Kill()
		<-exited
	}
	tail := func() string {
		b, _ := os.ReadFile(logPath)
		return strings.TrimSpace(string(b))
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			return fmt.Errorf("it exited: %s", tail())
		default:
		}
		resp, err := (&http.Client{Transport: r.Client}).Get(scheme + "://" + r.Host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				t.Cleanup(stop)
				return nil
			}
		}
		if time.Now().After(deadline) {
			stop()
			return fmt.Errorf("no answer on %s within 15s (last: %v): %s", r.Host, err, tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Tokens is how many bearer tokens the registry's token server issued.
func (r *Registry) Tokens() int64 { return r.tokens.Load() }

// PushRandomImage writes a new image of random bytes to the registry as
// ref (repository:tag, without the host) and returns its digest.
func (r *Registry) PushRandomImage(t testing.TB, ref string) v1.Hash {
	t.Helper()
	img, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	return r.push(t, ref, img)
}

// PushRandomIndex writes a new index of two random images (a
// multi-platform image) as ref and returns the index's digest.
func (r *Registry) PushRandomIndex(t testing.TB, ref string) v1.Hash {
	t.Helper()
	idx, err := random.Index(512, 1, 2)
	if err != nil {
		t.Fatal(err)
	}
	return r.push(t, ref, idx)
}

// push uploads an image or an index, with what it refers to, as ref.
func (r *Registry) push(t testing.TB, ref string, obj interface {
	remote.Taggable
	Digest() (v1.Hash, error)
}) v1.Hash {
	t.Helper()
	tag, err := name.NewTag(r.Host + "/" + ref)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	opts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(r.Client)}
	if r.opts.User != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.opts.User, Password: r.opts.Password}))
	}
	if err := remote.Push(tag, obj, opts...); err != nil {
		t.Fatalf("push %s: %v", tag, err)
	}
	d, err := obj.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// tokenAuth starts the token server and returns the registry's auth
// configuration, which trusts the server's signing certificate.
func (r *Registry) tokenAuth(t testing.TB, dir string) string {
	t.Helper()
	cert := SelfSigned(t, "skiff-test-token")
	bundle := filepath.Join(dir, "token.pem")
	if err := os.WriteFile(bundle, cert.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	key := cert.TLS.PrivateKey.(*ecdsa.PrivateKey)
	x5c := base64.StdEncoding.EncodeToString(cert.TLS.Certificate[0])
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		tok, err := signToken(key, x5c, req.URL.Query()["scope"])
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		r.tokens.Add(1)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"token": tok, "access_token": tok, "expires_in": 300, "issued_at": time.Now().UTC().Format(time.RFC3339)})
	}))
	t.Cleanup(srv.Close)
	// The realm names localhost: go-containerregistry refuses token
	// servers at loopback or private IP literals other than the
	// registry's own host:port.
	realm := "http://localhost:" + strings.TrimPrefix(srv.URL, "http://127.0.0.1:") + "/token"
	return fmt.Sprintf("auth:\n  token:\n    realm: %s\n    service: %s\n    issuer: skiff-test-token\n    rootcertbundle: %s\n", realm, registryService, bundle)
}

// signToken makes a JWT (ES256, the signing certificate in x5c) that
// grants every action scopes ask for ("repository:NAME:pull,push").
func signToken(key *ecdsa.PrivateKey, x5c string, scopes []string) (string, error) {
	type access struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	}
	grants := []access{}
	for _, s := range scopes {
		for sc := range strings.FieldsSeq(s) {
			parts := strings.Split(sc, ":")
			if len(parts) < 3 {
				continue
			}
			n := len(parts)
			grants = append(grants, access{Type: parts[0], Name: strings.Join(parts[1:n-1], ":"), Actions: strings.Split(parts[n-1], ",")})
		}
	}
	now := time.Now().Unix()
	header, _ := json.Marshal(map[string]any{"typ": "JWT", "alg": "ES256", "x5c": []string{x5c}})
	claims, _ := json.Marshal(map[string]any{
		"iss": "skiff-test-token", "sub": "", "aud": registryService,
		"exp": now + 300, "nbf": now - 10, "iat": now, "jti": fmt.Sprint(time.Now().UnixNano()),
		"access": grants,
	})
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	rr, ss, err := ecdsa.Sign(rand.Reader, key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	rr.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	return signing + "." + enc.EncodeToString(sig), nil
}

func randomHex(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", b)
}
