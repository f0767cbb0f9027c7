package server

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/testenv"
)

// On Kubernetes a release runs the image its tag named at deploy, pinned
// by digest from a real registry: the ReplicaSet's pod template names
// name@sha256:..., and the release data shows it. After the tag moves the
// existing release keeps its digest, a new release gets the new one, and
// a rollback the old one. A tag the registry lacks fails the deploy
// saying what to do.
func TestServerPinsImageDigestsOnKubernetes(t *testing.T) {
	reg := testenv.RequireRegistry(t, testenv.RegistryOptions{})
	cl, c, ns := kubeServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	spec := func(tag string) string {
		return "name: shop\nimage: " + reg.Host + "/club/shop:" + tag + "\nport: 8080\nreplicas: 2\nhealth: {path: /healthz}\n"
	}
	imageOf := func(n int) string {
		t.Helper()
		rel, err := cl.Release(ctx, "shop", n)
		if err != nil {
			t.Fatal(err)
		}
		return rel.Image
	}
	// runs waits until release n alone runs, its pods naming pinned, and
	// checks that the release data shows it.
	runs := func(n int, pinned string) {
		t.Helper()
		mustComplete(t, cl, "shop", n)
		awaitOnly(t, c, ns, "shop", n, pinned, 2)
		if got := imageOf(n); got != pinned {
			t.Errorf("release %d shows image %q, want %s", n, got, pinned)
		}
	}
	// moveAndDeploy pushes a new image as the stable tag and deploys it.
	moveAndDeploy := func() (int, string) {
		t.Helper()
		pinned := reg.Host + "/club/shop@" + reg.PushRandomImage(t, "club/shop:stable").String()
		n := deploySpec(t, cl, spec("stable")).Number
		runs(n, pinned)
		return n, pinned
	}

	first, pinned1 := moveAndDeploy()
	second, pinned2 := moveAndDeploy()
	if pinned2 == pinned1 || second == first {
		t.Fatalf("the moved tag deployed as release %d with %s, the same as release %d", second, pinned2, first)
	}
	if got := imageOf(first); got != pinned1 {
		t.Errorf("release %d shows image %q after the tag moved, want still %s", first, got, pinned1)
	}

	back, err := cl.Rollback(ctx, "shop", first)
	if err != nil {
		t.Fatal(err)
	}
	runs(back.Number, pinned1)

	missing := deploySpec(t, cl, spec("missing")).Number
	rel := awaitRelease(t, cl, "shop", missing)
	want := "image " + reg.Host + "/club/shop:missing: no such image: registry " + reg.Host + " has no tag missing in repository club/shop (it answered 404 Not Found): push the image with that tag, or pin it by digest"
	if rel.Status != "failed" || !strings.Contains(rel.Message, want) {
		t.Errorf("release %d with a tag the registry lacks is %s: %q; want failed saying %q", missing, rel.Status, rel.Message, want)
	}
	awaitOnly(t, c, ns, "shop", back.Number, pinned1, 2)
}

// --insecure-registry is checked before anything starts: a value that is
// not a registry host, or the flag without --runtime kubernetes, is
// refused saying what to give instead, and no data dir is made.
func TestServerChecksInsecureRegistries(t *testing.T) {
	for _, tc := range []struct {
		name, runtime string
		insecure      []string
		want          string
	}{
		{"not a host", "kubernetes", []string{"registry.club.lan:5000", "http://registry.club.lan"}, `--insecure-registry "http://registry.club.lan": not a host or host:port (no scheme, path or spaces): give a registry as host or host:port`},
		{"local runtime", "local", []string{"registry.club.lan:5000"}, "--insecure-registry applies to --runtime kubernetes only: with the local runtime, Docker Engine pulls images, so list the registry in insecure-registries of /etc/docker/daemon.json instead"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			err := Run(context.Background(), Config{
				DataDir: dir, Runtime: tc.runtime, Logger: slog.New(slog.DiscardHandler),
				Kube: KubeConfig{Namespace: "apps", InsecureRegistries: tc.insecure},
			})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v; want an error saying %q", err, tc.want)
			}
			if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("the refused start made its data dir: %v", err)
			}
		})
	}
}
