package kubernetes

import (
	"context"
	"encoding/base64"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/skiff-sh/skiff/internal/spec"
	"github.com/skiff-sh/skiff/internal/testenv"
)

func newImages(t *testing.T, opts ImagesOptions) *Images {
	t.Helper()
	im, err := NewImages(opts)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// dialingOnly is a copy of tr that connects to addr whatever the name
// asked for, so a registry on loopback answers for any name.
func dialingOnly(tr *http.Transport, addr string) *http.Transport {
	tr = tr.Clone()
	tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}
	return tr
}

func pinCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// A tag resolves to the digest of what the registry holds under it, an
// image or a multi-platform index, through the registry's bearer token
// challenge as an anonymous client; the release's build events say so.
func TestResolvePinsTagToRegistryDigest(t *testing.T) {
	reg := testenv.RequireRegistry(t, testenv.RegistryOptions{Token: true})
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	im := newImages(t, ImagesOptions{})
	for _, tc := range []struct {
		name, repo string
		push       func(testing.TB, string) v1.Hash
	}{
		{"image", "club/hello", reg.PushRandomImage},
		{"index", "club/multi", reg.PushRandomIndex},
	} {
		t.Run(tc.name, func(t *testing.T) {
			digest := tc.push(t, tc.repo+":1.4")
			image := reg.Host + "/" + tc.repo + ":1.4"
			tokens := reg.Tokens()
			var lines []string
			sp := &spec.Spec{Name: "hello", Image: image, Port: 8080}
			got, err := im.Resolve(pinCtx(t), "hello", 1, sp, "", func(l string) { lines = append(lines, l) })
			if err != nil {
				t.Fatal(err)
			}
			want := reg.Host + "/" + tc.repo + "@" + digest.String()
			if got != want {
				t.Fatalf("Resolve(%s) = %s, want %s", image, got, want)
			}
			if reg.Tokens() == tokens {
				t.Error("the registry's token server issued no token: the bearer challenge was not followed")
			}
			if len(lines) != 1 || lines[0] != "image "+image+" is "+want {
				t.Errorf("progress lines %q, want one saying which digest the image is", lines)
			}
		})
	}
}

// The tag moving on the registry changes what a new resolution returns;
// the earlier answer, which the controller recorded on its release, is
// the digest of the earlier image still.
func TestPinFollowsAMovedTag(t *testing.T) {
	reg := testenv.RequireRegistry(t, testenv.RegistryOptions{})
	im := newImages(t, ImagesOptions{})
	image := reg.Host + "/club/shop:stable"
	first := reg.PushRandomImage(t, "club/shop:stable")
	got1, err := im.Pin(pinCtx(t), image)
	if err != nil {
		t.Fatal(err)
	}
	second := reg.PushRandomImage(t, "club/shop:stable")
	got2, err := im.Pin(pinCtx(t), image)
	if err != nil {
		t.Fatal(err)
	}
	if want := reg.Host + "/club/shop@" + first.String(); got1 != want {
		t.Errorf("before the move: %s, want %s", got1, want)
	}
	if want := reg.Host + "/club/shop@" + second.String(); got2 != want {
		t.Errorf("after the move: %s, want %s", got2, want)
	}
}

// A reference pinned by digest is kept as it is, and no registry is
// asked: the listener where its registry would be accepts no connection.
func TestPinKeepsDigestReferencesWithoutAsking(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	host := ln.Addr().String()
	digest := "sha256:" + strings.Repeat("ab", 32)
	im := newImages(t, ImagesOptions{})
	for _, image := range []string{host + "/club/hello@" + digest, host + "/club/hello:1.4@" + digest, "ghcr.io/club/hello@" + digest} {
		got, err := im.Resolve(pinCtx(t), "hello", 1, &spec.Spec{Name: "hello", Image: image, Port: 8080}, "", nil)
		if err != nil || got != image {
			t.Errorf("Resolve(%s) = %q, %v; want it unchanged", image, got, err)
		}
	}
	// A connection Pin made would have completed its handshake before Pin
	// returned, so it is in the accept queue now.
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(200 * time.Millisecond))
	if c, err := ln.Accept(); err == nil {
		c.Close()
		t.Fatal("a registry was asked about a reference pinned by digest")
	}
}

// A tag or repository the registry does not have fails with which image,
// which registry, what it answered and what to do.
func TestPinUnknownTagSaysWhatToDo(t *testing.T) {
	reg := testenv.RequireRegistry(t, testenv.RegistryOptions{})
	reg.PushRandomImage(t, "club/hello:1")
	im := newImages(t, ImagesOptions{})
	for _, tc := range []struct{ image, repo, tag string }{
		{reg.Host + "/club/hello:2", "club/hello", "2"},
		{reg.Host + "/club/nothing:1", "club/nothing", "1"},
	} {
		_, err := im.Pin(pinCtx(t), tc.image)
		if !errors.Is(err, ErrImageUnknown) {
			t.Fatalf("Pin(%s): %v; want ErrImageUnknown", tc.image, err)
		}
		want := "image " + tc.image + ": no such image: registry " + reg.Host + " has no tag " + tc.tag + " in repository " + tc.repo +
			" (it answered 404 Not Found): push the image with that tag, or pin it by digest in image: (" + reg.Host + "/" + tc.repo + "@sha256:...)"
		if err.Error() != want {
			t.Errorf("Pin(%s):\n got %v\nwant %s", tc.image, err, want)
		}
	}
}

// A registry nobody listens for fails at once with what the dial
// answered.
func TestPinUnreachableRegistrySaysWhatToDo(t *testing.T) {
	host := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	im := newImages(t, ImagesOptions{})
	start := time.Now()
	_, err := im.Pin(pinCtx(t), host+"/club/hello:1")
	if !errors.Is(err, ErrRegistryUnreachable) {
		t.Fatalf("Pin: %v; want ErrRegistryUnreachable", err)
	}
	for _, want := range []string{"image " + host + "/club/hello:1: ", "registry " + host + " did not answer (", "connection refused", "check that it runs", host + "/club/hello@sha256:..."} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("a refused connection took %s to report", took)
	}
}

// A server that is not a registry is named as such: its answer is not
// taken for a missing image.
func TestPinNotARegistrySaysSo(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	_, err := newImages(t, ImagesOptions{}).Pin(pinCtx(t), host+"/club/hello:1")
	if err == nil || errors.Is(err, ErrImageUnknown) {
		t.Fatalf("Pin: %v; want an error that is not ErrImageUnknown", err)
	}
	for _, want := range []string{"registry " + host + " answered 404 Not Found (GET " + srv.URL + "/v2/", "check that " + host + " is an image registry"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

// Plain HTTP is used for registries on loopback and for those named with
// --insecure-registry (host:port, or host for any port), never for
// others, not even private addresses. The registry is reached under
// other names by a dialer that sends every connection to it on loopback.
func TestPinPlainHTTPOnlyWhereAllowed(t *testing.T) {
	reg := testenv.RequireRegistry(t, testenv.RegistryOptions{})
	digest := reg.PushRandomImage(t, "club/hello:1")
	_, port, _ := net.SplitHostPort(reg.Host)
	toRegistry := dialingOnly(reg.Client, reg.Host)
	for _, tc := range []struct {
		name, host string
		insecure   []string
		ok         bool
	}{
		{"loopback", reg.Host, nil, true},
		{"named host:port", "registry.club.test:" + port, []string{"registry.club.test:" + port}, true},
		{"named host", "registry.club.test:" + port, []string{"Registry.Club.Test"}, true},
		{"unnamed", "registry.club.test:" + port, nil, false},
		{"other port named", "registry.club.test:" + port, []string{"registry.club.test:1"}, false},
		{"private address", "10.1.2.3:" + port, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im := newImages(t, ImagesOptions{Insecure: tc.insecure})
			im.base = toRegistry
			got, err := im.Pin(pinCtx(t), tc.host+"/club/hello:1")
			if tc.ok {
				if want := tc.host + "/club/hello@" + digest.String(); got != want || err != nil {
					t.Fatalf("Pin = %q, %v; want %s", got, err, want)
				}
				return
			}
			if !errors.Is(err, ErrPlainHTTP) {
				t.Fatalf("Pin = %q, %v; want ErrPlainHTTP", got, err)
			}
			if want := "registry " + tc.host + " answers only plain HTTP, which skiff uses only for registries on loopback or named with --insecure-registry: serve the registry over HTTPS, or start skiff server with --insecure-registry " + tc.host; !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		})
	}
}

// A registry that serves HTTPS is reached under its own name with no
// --insecure-registry, its certificate checked; one whose certificate is
// not trusted fails saying so instead of falling back to plain HTTP.
func TestPinHTTPSRegistry(t *testing.T) {
	reg := testenv.RequireRegistry(t, testenv.RegistryOptions{TLS: true})
	digest := reg.PushRandomImage(t, "club/hello:1")
	_, port, _ := net.SplitHostPort(reg.Host)
	image := "registry.club.test:" + port + "/club/hello:1"
	for _, trusted := range []bool{true, false} {
		im := newImages(t, ImagesOptions{})
		im.base = dialingOnly(reg.Client, reg.Host)
		if !trusted {
			im.base.(*http.Transport).TLSClientConfig = nil
		}
		got, err := im.Pin(pinCtx(t), image)
		if trusted {
			if want := "registry.club.test:" + port + "/club/hello@" + digest.String(); got != want || err != nil {
				t.Errorf("Pin over trusted HTTPS = %q, %v; want %s", got, err, want)
			}
			continue
		}
		want := "registry registry.club.test:" + port + " presented a certificate this server does not trust (x509: certificate signed by unknown authority)"
		if !errors.Is(err, ErrRegistryUntrusted) || !strings.Contains(err.Error(), want) {
			t.Errorf("Pin over untrusted HTTPS = %q, %v; want ErrRegistryUntrusted saying %q", got, err, want)
		}
	}
}

// Credentials come from the docker config.json of $DOCKER_CONFIG; without
// them a registry that demands a login fails saying how to give one.
func TestPinUsesDockerConfigCredentials(t *testing.T) {
	reg := testenv.RequireRegistry(t, testenv.RegistryOptions{User: "club", Password: "s3cret-pass"})
	digest := reg.PushRandomImage(t, "club/private:1")
	image := reg.Host + "/club/private:1"
	im := newImages(t, ImagesOptions{})

	t.Setenv("DOCKER_CONFIG", t.TempDir())
	_, err := im.Pin(pinCtx(t), image)
	if !errors.Is(err, ErrRegistryDenied) {
		t.Fatalf("Pin without credentials: %v; want ErrRegistryDenied", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Error("the error shows the password")
	}
	for _, want := range []string{"registry " + reg.Host + " refused to show repository club/private (it answered 401 Unauthorized)", "docker login " + reg.Host} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	dir := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("club:s3cret-pass"))
	cfg := `{"auths": {"` + reg.Host + `": {"auth": "` + auth + `"}}}`
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DOCKER_CONFIG", dir)
	got, err := im.Pin(pinCtx(t), image)
	if want := reg.Host + "/club/private@" + digest.String(); got != want || err != nil {
		t.Fatalf("Pin with credentials = %q, %v; want %s", got, err, want)
	}
}

// Bad input is refused with what was wrong: an --insecure-registry that
// is not a host, an image that is not a reference, build: and command-only
// apps.
func TestImagesRefuseBadInput(t *testing.T) {
	for _, bad := range []string{"http://registry.club.lan", "registry.club.lan/path", "", "a b"} {
		_, err := NewImages(ImagesOptions{Insecure: []string{bad}})
		if err == nil || !strings.Contains(err.Error(), "--insecure-registry \""+bad+"\"") || !strings.Contains(err.Error(), "host:port") {
			t.Errorf("NewImages(--insecure-registry %q): %v; want an error naming it and the form expected", bad, err)
		}
	}
	im := newImages(t, ImagesOptions{})
	_, err := im.Pin(pinCtx(t), "Club/Hello:1")
	if !errors.Is(err, ErrBadImage) || !strings.Contains(err.Error(), "[registry/]repository[:tag]") {
		t.Errorf("Pin(Club/Hello:1): %v; want ErrBadImage with the forms expected", err)
	}
	if _, err := im.Resolve(pinCtx(t), "b", 1, &spec.Spec{Name: "b", Build: "./"}, "", nil); !errors.Is(err, ErrBuildUnsupported) {
		t.Errorf("Resolve of build: %v; want ErrBuildUnsupported", err)
	}
	if _, err := im.Resolve(pinCtx(t), "c", 1, &spec.Spec{Name: "c", Command: spec.ShellCommand("./run")}, "", nil); !errors.Is(err, ErrCommandOnly) {
		t.Errorf("Resolve of a command-only app: %v; want ErrCommandOnly", err)
	}
}
