package docker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/skiff-sh/skiff/internal/supervisor"
)

// Recover finds this node's containers by their skiff.node label. Running
// ones are returned and their output is followed again from where the
// last copy stopped. Exited ones ended while skiff was away: what they
// wrote since is copied, then they are removed (nothing would ever wait
// for them).
func (d *Driver) Recover(ctx context.Context) ([]supervisor.Handle, error) {
	cli, err := d.engine.Client(ctx)
	if err != nil {
		return nil, fmt.Errorf("recover instances: %w", err)
	}
	res, err := cli.ContainerList(ctx, client.ContainerListOptions{
		All:     true,
		Filters: make(client.Filters).Add("label", LabelNode+"="+d.nodeID),
	})
	if err != nil {
		return nil, fmt.Errorf("recover instances: list containers: %w", err)
	}
	var out []supervisor.Handle
	for _, c := range res.Items {
		h, running, err := d.inspect(ctx, cli, c.ID)
		if errors.Is(err, ErrGone) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("recover instances: %w", err)
		}
		if h.ID == "" || !validName(h.ID) {
			d.log.Warn("skipping a container that looks like an instance", "container", short(c.ID))
			continue
		}
		if running {
			d.follow(h)
			out = append(out, h)
			continue
		}
		cp := &copier{d: d, cid: c.ID, id: h.ID, cancel: func() {}, done: make(chan struct{})}
		cp.last, cp.lastLine = d.readPos(h.ID, c.ID)
		if err := cp.copyOnce(ctx, false); err != nil {
			d.log.Warn("could not copy the output of an instance that ended while skiff was away", "instance", h.ID, "err", err)
		}
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
			d.log.Warn("could not remove the container of an ended instance", "instance", h.ID, "err", err)
		}
		_ = removeIfExists(d.posPath(h.ID))
	}
	slices.SortFunc(out, func(a, b supervisor.Handle) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

func removeIfExists(path string) error {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
