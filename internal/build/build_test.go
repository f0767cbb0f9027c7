package build_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/skiff-sh/skiff/internal/build"
	"github.com/skiff-sh/skiff/internal/runtime/docker"
	"github.com/skiff-sh/skiff/internal/testenv"
)

// image builds an empty image whose bits differ by mark, with labels and
// tag, and returns its ID.
func image(t *testing.T, b *build.Builder, mark, tag string, labels map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nLABEL mark="+mark+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id, err := b.Build(ctx, build.Request{Dir: dir, Tags: []string{tag}, Labels: labels}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// exists tells whether the engine has image ref.
func exists(t *testing.T, cli *client.Client, ref string) bool {
	t.Helper()
	_, err := cli.ImageInspect(context.Background(), ref)
	if err != nil && !cerrdefs.IsNotFound(err) {
		t.Fatal(err)
	}
	return err == nil
}

// TestPruneAndPurge: Prune removes the images skiff built for an app
// except those kept, and nothing it did not build; Purge removes all the
// app's built images and its volumes, and nothing of another app.
func TestPruneAndPurge(t *testing.T) {
	e := testenv.RequireDocker(t)
	cli, err := e.Client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	b := build.New(e, nil)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	app, other := "prune"+suffix, "keep"+suffix
	userTag := "skiff-test/user-" + suffix + ":latest"
	t.Cleanup(func() {
		ctx := context.Background()
		for _, ref := range []string{userTag, build.Tag(app, 1), build.Tag(app, 2), build.Tag(app, 3), build.Tag(other, 1)} {
			cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true})
		}
		for _, v := range []string{docker.VolumeName(app, "data"), docker.VolumeName(other, "data")} {
			e.RemoveVolume(ctx, v)
		}
	})
	built := func(a string, n int) map[string]string {
		return map[string]string{docker.LabelApp: a, docker.LabelRelease: strconv.Itoa(n), build.LabelBuilt: "1"}
	}
	var ids []string
	for n := 1; n <= 3; n++ {
		ids = append(ids, image(t, b, fmt.Sprintf("%s-%d", app, n), build.Tag(app, n), built(app, n)))
	}
	// An image of the app skiff did not build (image: names it).
	user := image(t, b, "user-"+suffix, userTag, map[string]string{docker.LabelApp: app})
	otherID := image(t, b, other, build.Tag(other, 1), built(other, 1))

	ctx := context.Background()
	if err := b.Prune(ctx, app, []string{ids[1]}); err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]bool{ids[0]: false, ids[1]: true, ids[2]: false, user: true, otherID: true} {
		if got := exists(t, cli, ref); got != want {
			t.Errorf("after Prune keeping %s: image %s exists = %v, want %v", ids[1], ref, got, want)
		}
	}

	for _, a := range []string{app, other} {
		if _, err := cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: docker.VolumeName(a, "data"), Labels: map[string]string{docker.LabelApp: a}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Purge(ctx, app); err != nil {
		t.Fatal(err)
	}
	for ref, want := range map[string]bool{ids[1]: false, user: true, otherID: true} {
		if got := exists(t, cli, ref); got != want {
			t.Errorf("after Purge: image %s exists = %v, want %v", ref, got, want)
		}
	}
	for v, want := range map[string]bool{docker.VolumeName(app, "data"): false, docker.VolumeName(other, "data"): true} {
		_, err := cli.VolumeInspect(ctx, v, client.VolumeInspectOptions{})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Fatal(err)
		}
		if got := err == nil; got != want {
			t.Errorf("after Purge: volume %s exists = %v, want %v", v, got, want)
		}
	}
}
