package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/skiff-sh/skiff/internal/build"
	"github.com/skiff-sh/skiff/internal/runtime/docker"
)

func clientTag(source, target string) client.ImageTagOptions {
	return client.ImageTagOptions{Source: source, Target: target}
}

func containerListByApp(app string) client.ContainerListOptions {
	return client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", docker.LabelApp+"="+app)}
}

func buildImage(t *testing.T, e *docker.Engine, dir, tag string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	id, err := build.New(e, nil).Build(ctx, build.Request{Dir: dir, Tags: []string{tag}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
