// Package build turns a release's `image:` or `build:` into the ID of a
// local container image, through Docker Engine's API: it builds a
// release's uploaded directory with its Dockerfile, streaming the output
// line by line, or resolves an image reference, pulling it only when the
// engine does not have it. The controller records the ID on the release,
// so a rollback runs exactly those bits even after a tag moved.
//
// It also removes what skiff built once no release needs it: images of
// releases older than the last few, and an app's images and volumes when
// the app is destroyed.
package build

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/jsonstream"
	"github.com/moby/moby/client"

	"github.com/skiff-sh/skiff/internal/runtime/docker"
	"github.com/skiff-sh/skiff/internal/spec"
)

var (
	// ErrBuild means an image build failed; the error carries the tail of
	// the build output.
	ErrBuild = errors.New("image build failed")
	// ErrImageNotFound means an image is neither in the engine nor
	// pullable.
	ErrImageNotFound = errors.New("image not found")
	// ErrNoImage means a spec names neither image nor build.
	ErrNoImage = errors.New("spec has no image or build")
)

// LabelBuilt marks images skiff built; only those are ever removed.
const LabelBuilt = "skiff.built"

// tailLines is how much build output a failure carries.
const tailLines = 15

// pullTimeout bounds a pull; no registry may be reachable at all.
const pullTimeout = 2 * time.Minute

// Builder builds and resolves images on one engine.
type Builder struct {
	engine *docker.Engine
	log    *slog.Logger
}

// New returns a Builder on engine.
func New(engine *docker.Engine, log *slog.Logger) *Builder {
	if log == nil {
		log = slog.Default()
	}
	return &Builder{engine: engine, log: log.With("component", "build")}
}

// Tag is the tag of the image built for release n of app.
func Tag(app string, n int) string { return "skiff/" + app + ":" + strconv.Itoa(n) }

// Resolve returns the image ID release n of app runs: for `build:` it
// builds dir/<build> with its Dockerfile, tagged Tag(app, n), sending each
// output line to progress; for `image:` it looks the reference up, pulling
// it when missing.
func (b *Builder) Resolve(ctx context.Context, app string, n int, sp *spec.Spec, dir string, progress func(line string)) (string, error) {
	switch {
	case sp.Build != "":
		ctxDir := filepath.Join(dir, filepath.FromSlash(sp.Build))
		return b.Build(ctx, Request{
			Dir:        ctxDir,
			Dockerfile: sp.Dockerfile,
			Tags:       []string{Tag(app, n)},
			Labels:     map[string]string{docker.LabelApp: app, docker.LabelRelease: strconv.Itoa(n), LabelBuilt: "1"},
		}, progress)
	case sp.Image != "":
		return b.Image(ctx, sp.Image, progress)
	}
	return "", ErrNoImage
}

// Request is one build.
type Request struct {
	// Dir is the build context.
	Dir string
	// Dockerfile is relative to Dir. Default "Dockerfile".
	Dockerfile string
	Tags       []string
	Labels     map[string]string
}

// Build builds an image from r.Dir and returns its ID. Output lines go to
// progress as they come; a failure is ErrBuild with the last lines.
func (b *Builder) Build(ctx context.Context, r Request, progress func(line string)) (string, error) {
	if progress == nil {
		progress = func(string) {}
	}
	dockerfile := r.Dockerfile
	if dockerfile == "" {
		dockerfile = "Dockerfile"
	}
	if fi, err := os.Stat(r.Dir); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("%w: build directory %s is missing from the release (was it uploaded? build: is relative to skiff.yaml)", ErrBuild, r.Dir)
	}
	if _, err := os.Stat(filepath.Join(r.Dir, filepath.FromSlash(dockerfile))); err != nil {
		return "", fmt.Errorf("%w: no %s in build directory %s (set dockerfile: relative to the build directory)", ErrBuild, dockerfile, r.Dir)
	}
	cli, err := b.engine.Client(ctx)
	if err != nil {
		return "", err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarDir(pw, r.Dir)) }()
	defer pr.Close()
	res, err := cli.ImageBuild(ctx, pr, client.ImageBuildOptions{
		Tags:        r.Tags,
		Dockerfile:  filepath.ToSlash(dockerfile),
		Labels:      r.Labels,
		Remove:      true,
		ForceRemove: true,
	})
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrBuild, err)
	}
	defer res.Body.Close()

	var tail []string
	var partial string
	emit := func(s string) {
		s = strings.TrimRight(s, "\r")
		if strings.TrimSpace(s) == "" {
			return
		}
		progress(s)
		tail = append(tail, s)
		if len(tail) > tailLines {
			tail = tail[1:]
		}
	}
	id := ""
	dec := json.NewDecoder(res.Body)
	for {
		var m jsonstream.Message
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return "", fmt.Errorf("%w: reading the engine's build output: %v", ErrBuild, err)
		}
		if m.Error != nil {
			emit(partial)
			emit(m.Error.Message)
			return "", fmt.Errorf("%w: %s; last output:\n  %s", ErrBuild, m.Error.Message, strings.Join(tail, "\n  "))
		}
		if m.Aux != nil {
			var aux struct{ ID string }
			if json.Unmarshal(*m.Aux, &aux) == nil && aux.ID != "" {
				id = aux.ID
			}
		}
		text := partial + m.Stream
		lines := strings.Split(text, "\n")
		partial = lines[len(lines)-1]
		for _, l := range lines[:len(lines)-1] {
			emit(l)
		}
	}
	emit(partial)
	if id == "" && len(r.Tags) > 0 {
		// Engines before API 1.31 say the ID only in words; the tag is
		// exact.
		ins, err := cli.ImageInspect(ctx, r.Tags[0])
		if err != nil {
			return "", fmt.Errorf("%w: the engine reported no image; last output:\n  %s", ErrBuild, strings.Join(tail, "\n  "))
		}
		id = ins.ID
	}
	if id == "" {
		return "", fmt.Errorf("%w: the engine reported no image ID", ErrBuild)
	}
	return id, nil
}

// Image resolves ref to the ID of a local image, pulling it when the
// engine does not have it.
func (b *Builder) Image(ctx context.Context, ref string, progress func(line string)) (string, error) {
	cli, err := b.engine.Client(ctx)
	if err != nil {
		return "", err
	}
	ins, err := cli.ImageInspect(ctx, ref)
	if err == nil {
		return ins.ID, nil
	}
	if !cerrdefs.IsNotFound(err) {
		return "", fmt.Errorf("look up image %s: %w", ref, err)
	}
	if progress != nil {
		progress("image " + ref + " is not in the engine; pulling it")
	}
	pctx, cancel := context.WithTimeout(ctx, pullTimeout)
	defer cancel()
	pull, err := cli.ImagePull(pctx, ref, client.ImagePullOptions{})
	if err == nil {
		err = pull.Wait(pctx)
		pull.Close()
	}
	if err != nil {
		return "", fmt.Errorf("%w: %s is not in the engine and pulling it failed (%v): check the name, or load it with docker load / build it with build:", ErrImageNotFound, ref, err)
	}
	ins, err = cli.ImageInspect(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("%w: %s was pulled but cannot be found: %v", ErrImageNotFound, ref, err)
	}
	return ins.ID, nil
}

// Prune removes the images skiff built for app except those whose IDs are
// in keep. An image a container still uses stays.
func (b *Builder) Prune(ctx context.Context, app string, keep []string) error {
	return b.removeImages(ctx, app, keep)
}

// Purge removes everything skiff made for a destroyed app: the images it
// built and its volumes.
func (b *Builder) Purge(ctx context.Context, app string) error {
	if err := b.removeImages(ctx, app, nil); err != nil {
		return err
	}
	cli, err := b.engine.Client(ctx)
	if err != nil {
		return err
	}
	vols, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: make(client.Filters).Add("label", docker.LabelApp+"="+app)})
	if err != nil {
		return fmt.Errorf("list volumes of %s: %w", app, err)
	}
	var errs []error
	for _, v := range vols.Items {
		if _, err := cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove volume %s: %w", v.Name, err))
		}
	}
	return errors.Join(errs...)
}

func (b *Builder) removeImages(ctx context.Context, app string, keep []string) error {
	cli, err := b.engine.Client(ctx)
	if err != nil {
		return err
	}
	imgs, err := cli.ImageList(ctx, client.ImageListOptions{
		Filters: make(client.Filters).Add("label", docker.LabelApp+"="+app).Add("label", LabelBuilt+"=1"),
	})
	if err != nil {
		return fmt.Errorf("list images of %s: %w", app, err)
	}
	prefix := "skiff/" + app + ":"
	for _, img := range imgs.Items {
		if slices.Contains(keep, img.ID) {
			continue
		}
		// By tag, so only skiff's own names go; the image goes with its
		// last tag.
		refs := []string{}
		for _, t := range img.RepoTags {
			if strings.HasPrefix(t, prefix) {
				refs = append(refs, t)
			}
		}
		if len(img.RepoTags) == 0 {
			refs = append(refs, img.ID)
		}
		for _, ref := range refs {
			if _, err := cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
				// In use by a container, most likely: it goes next time.
				b.log.Debug("image kept", "app", app, "image", ref, "err", err)
				continue
			}
			b.log.Info("removed an old image", "app", app, "image", ref)
		}
	}
	return nil
}

// tarDir writes dir as an uncompressed tar, the build context format.
func tarDir(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil || rel == "." {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(path); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if d.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid, hdr.Uname, hdr.Gname = 0, 0, "", ""
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if !info.Mode().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err != nil {
		return fmt.Errorf("pack build context %s: %w", dir, err)
	}
	return tw.Close()
}
