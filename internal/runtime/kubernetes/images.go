package kubernetes

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/skiff-sh/skiff/internal/spec"
)

var (
	// ErrBuildUnsupported refuses build: on a cluster: an image built on
	// the server exists only there, and nodes pull theirs from a registry.
	ErrBuildUnsupported = errors.New("build: is not supported on the kubernetes runtime")
	// ErrBadImage means image: is not an image reference.
	ErrBadImage = errors.New("not an image reference")
	// ErrImageUnknown means the registry has no image under that tag.
	ErrImageUnknown = errors.New("no such image")
	// ErrRegistryDenied means the registry refused to show the image.
	ErrRegistryDenied = errors.New("registry refused access")
	// ErrRegistryUnreachable means the registry did not answer.
	ErrRegistryUnreachable = errors.New("registry unreachable")
	// ErrRegistryUntrusted means the registry's TLS certificate did not
	// verify.
	ErrRegistryUntrusted = errors.New("registry certificate not trusted")
	// ErrPlainHTTP means the registry speaks only plain HTTP and is
	// neither on loopback nor named with --insecure-registry.
	ErrPlainHTTP = errors.New("plain HTTP refused")
)

// resolveTimeout bounds one image resolution, retries included.
const resolveTimeout = 30 * time.Second

// ImagesOptions configure Images.
type ImagesOptions struct {
	// Insecure lists registries, as host or host:port, that may be
	// reached over plain HTTP (skiff server --insecure-registry). A host
	// without a port matches it on any port. Registries on loopback
	// always may be. Default none.
	Insecure []string
	// Keychain finds registry credentials. Default authn.DefaultKeychain:
	// the docker config.json in $DOCKER_CONFIG or ~/.docker, with its
	// credential helpers; anonymous where it has none.
	Keychain authn.Keychain
	// Timeout bounds one resolution. Default 30s.
	Timeout time.Duration
}

// Images resolves a container app's image on a cluster (the controller's
// Images). It asks the image's registry which manifest the spec's tag
// names now and returns name@sha256:digest, which the controller records
// on the release: every pod of the release, and a rollback to it, runs
// the same bits even after the tag moves. A reference already pinned by
// digest is kept as it is, without asking. There is nothing local to
// prune or purge: images live in the registry and on the nodes.
type Images struct {
	insecure map[string]bool
	keychain authn.Keychain
	timeout  time.Duration
	// base carries every request to registries; tests replace it to
	// reach a registry under a name of their choosing.
	base http.RoundTripper
}

// NewImages returns Images, or an error naming an Insecure entry that is
// not a registry host.
func NewImages(opts ImagesOptions) (*Images, error) {
	im := &Images{insecure: map[string]bool{}, keychain: opts.Keychain, timeout: opts.Timeout}
	for _, h := range opts.Insecure {
		host, err := registryHost(h)
		if err != nil {
			return nil, fmt.Errorf("--insecure-registry %q: %w: give a registry as host or host:port, such as registry.club.lan:5000", h, err)
		}
		im.insecure[host] = true
	}
	if im.keychain == nil {
		im.keychain = authn.DefaultKeychain
	}
	if im.timeout == 0 {
		im.timeout = resolveTimeout
	}
	im.base = http.DefaultTransport.(*http.Transport).Clone()
	return im, nil
}

// registryHost checks that s is host or host:port and returns it in
// lower case.
func registryHost(s string) (string, error) {
	if s == "" || strings.ContainsAny(s, "/@ ") || strings.Contains(s, "://") {
		return "", errors.New("not a host or host:port (no scheme, path or spaces)")
	}
	if _, err := name.NewRegistry(s, name.StrictValidation); err != nil {
		return "", err
	}
	return strings.ToLower(s), nil
}

// Resolve returns the digest-pinned reference of the spec's image, or
// refuses build: and command-only apps.
func (im *Images) Resolve(ctx context.Context, app string, n int, sp *spec.Spec, dir string, progress func(string)) (string, error) {
	if sp.Build != "" {
		return "", fmt.Errorf("app %s: %w: build the image, push it to a registry the cluster can pull from, and name it with image: (ideally by digest, name@sha256:...)", app, ErrBuildUnsupported)
	}
	if sp.Image == "" {
		return "", fmt.Errorf("app %s has a command but no image: %w", app, ErrCommandOnly)
	}
	pinned, err := im.Pin(ctx, sp.Image)
	if err != nil {
		return "", fmt.Errorf("app %s: %w", app, err)
	}
	if progress != nil && pinned != sp.Image {
		progress("image " + sp.Image + " is " + pinned)
	}
	return pinned, nil
}

// Pin returns image pinned to the digest of the manifest (an image or an
// index of images per platform) its registry holds under its tag now. An
// image already pinned by digest is returned unchanged.
func (im *Images) Pin(ctx context.Context, image string) (string, error) {
	ref, err := name.ParseReference(image)
	if err != nil {
		return "", fmt.Errorf("image %q: %w (%v): write it as [registry/]repository[:tag] or [registry/]repository@sha256:<64 hex digits>", image, ErrBadImage, err)
	}
	tag, ok := ref.(name.Tag)
	if !ok {
		return image, nil
	}
	reg := tag.RegistryStr()
	if im.plainAllowed(reg) {
		if tag, err = name.NewTag(image, name.Insecure); err != nil {
			return "", fmt.Errorf("image %q: %w (%v)", image, ErrBadImage, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, im.timeout)
	defer cancel()
	g := &guard{base: im.base, allowed: im.plainAllowed}
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(g),
		remote.WithAuthFromKeychain(im.keychain),
		remote.WithUserAgent("skiff"),
	}
	var digest v1.Hash
	desc, err := remote.Head(tag, opts...)
	if err == nil {
		digest = desc.Digest
	} else if headFallback(err, g) {
		// Some registries answer HEAD without Docker-Content-Digest or
		// not at all; the manifest itself then gives the digest.
		var got *remote.Descriptor
		if got, err = remote.Get(tag, opts...); err == nil {
			digest = got.Digest
		}
	}
	if err != nil {
		return "", explain(ctx, image, tag, reg, g, err)
	}
	return repository(image) + "@" + digest.String(), nil
}

// repository is image without its tag, spelled as the user wrote it.
func repository(image string) string {
	if i := strings.LastIndexByte(image, ':'); i > strings.LastIndexByte(image, '/') {
		return image[:i]
	}
	return image
}

// plainAllowed says whether registry host (host or host:port) may be
// reached over plain HTTP: loopback always, others only when listed.
func (im *Images) plainAllowed(hostport string) bool {
	hostport = strings.ToLower(hostport)
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return true
	}
	return im.insecure[hostport] || im.insecure[host]
}

// headFallback says whether a failed HEAD is worth a GET: not when the
// registry was unreachable, refused plain HTTP, or answered that the
// image is missing or forbidden, which a GET would only repeat.
func headFallback(err error, g *guard) bool {
	if g.failure() != nil {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		switch te.StatusCode {
		case http.StatusNotFound, http.StatusUnauthorized, http.StatusForbidden:
			return false
		}
	}
	return !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled)
}

// explain turns a failed resolution into what the user must know: which
// image, which registry, what it answered, and what to do.
func explain(ctx context.Context, image string, tag name.Tag, reg string, g *guard, err error) error {
	pin := "or pin it by digest in image: (" + repository(image) + "@sha256:...)"
	if plain := g.plainOnly(); plain != "" {
		return fmt.Errorf("image %s: %w: registry %s answers only plain HTTP, which skiff uses only for registries on loopback or named with --insecure-registry: serve the registry over HTTPS, or start skiff server with --insecure-registry %s", image, ErrPlainHTTP, plain, plain)
	}
	var te *transport.Error
	if errors.As(err, &te) {
		answer := fmt.Sprintf("%d %s", te.StatusCode, http.StatusText(te.StatusCode))
		manifest := te.Request == nil || strings.Contains(te.Request.URL.Path, "/manifests/")
		switch {
		case te.StatusCode == http.StatusNotFound && manifest:
			return fmt.Errorf("image %s: %w: registry %s has no tag %s in repository %s (it answered %s): push the image with that tag, %s", image, ErrImageUnknown, reg, tag.TagStr(), tag.RepositoryStr(), answer, pin)
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden:
			return fmt.Errorf("image %s: %w: registry %s refused to show repository %s (it answered %s): log in for the user skiff server runs as (docker login %s writes ~/.docker/config.json, or set DOCKER_CONFIG), or make the repository public", image, ErrRegistryDenied, reg, tag.RepositoryStr(), answer, reg)
		}
		return fmt.Errorf("image %s: registry %s answered %s (%v): check that %s is an image registry (Docker Registry HTTP API v2) and works, then deploy again, %s", image, reg, answer, te, reg, pin)
	}
	var untrusted *tls.CertificateVerificationError
	if nerr := g.failure(); errors.As(nerr, &untrusted) {
		return fmt.Errorf("image %s: %w: registry %s presented a certificate this server does not trust (%v): give the registry a certificate from a CA the server trusts, or add its CA to the server's system trust store", image, ErrRegistryUntrusted, reg, untrusted.Err)
	}
	if nerr := g.failure(); nerr != nil {
		return fmt.Errorf("image %s: %w: registry %s did not answer (%v): check that it runs and that this server reaches it (its name, port, firewall, proxy), then deploy again, %s", image, ErrRegistryUnreachable, reg, nerr, pin)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("image %s: %w: registry %s did not answer within the time allowed (%v): check that it runs and that this server reaches it, then deploy again, %s", image, ErrRegistryUnreachable, reg, err, pin)
	}
	return fmt.Errorf("image %s: ask registry %s for its digest: %w", image, reg, err)
}

// guard carries requests to registries. It refuses plain HTTP to hosts
// not allowed it (go-containerregistry would otherwise fall back to HTTP
// for private addresses), and remembers what went wrong below HTTP, so
// that a failure can be told apart from an answer.
type guard struct {
	base    http.RoundTripper
	allowed func(hostport string) bool

	mu       sync.Mutex
	plain    string // a host that answered HTTPS with plain HTTP
	fail     error  // the last error below HTTP
	answered bool   // whether any request got an HTTP answer
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.allowed(req.URL.Host) {
		return nil, fmt.Errorf("plain HTTP to %s refused: it is neither on loopback nor named with --insecure-registry", req.URL.Host)
	}
	resp, err := g.base.RoundTrip(req)
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case err == nil:
		g.answered = true
	case req.Context().Err() == nil:
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && string(rh.RecordHeader[:]) == "HTTP/" && !g.allowed(req.URL.Host) {
			g.plain = req.URL.Host
		}
		g.fail = err
	}
	return resp, err
}

func (g *guard) plainOnly() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.plain
}

// failure is the error that kept every request from an HTTP answer, or
// nil once one was answered.
func (g *guard) failure() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.answered {
		return nil
	}
	return g.fail
}

// Prune does nothing: images live in the registry and on the nodes.
func (*Images) Prune(ctx context.Context, app string, keep []string) error { return nil }

// Purge does nothing, for the same reason.
func (*Images) Purge(ctx context.Context, app string) error { return nil }
