package docker

import (
	"context"
	"encoding/json"
	"fmt"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	"github.com/skiff-sh/skiff/internal/supervisor"
)

// Stats reads the container's CPU time and memory in one shot from the
// engine. Memory is what the kernel could not reclaim at once: usage less
// the inactive page cache, as `docker stats` shows it.
func (d *Driver) Stats(ctx context.Context, h supervisor.Handle) (supervisor.Stats, error) {
	cid, err := containerID(h)
	if err != nil {
		return supervisor.Stats{}, fmt.Errorf("stats of instance %s: %w", h.ID, err)
	}
	cli, err := d.engine.client()
	if err != nil {
		return supervisor.Stats{}, fmt.Errorf("stats of instance %s: %w", h.ID, err)
	}
	res, err := cli.ContainerStats(ctx, cid, client.ContainerStatsOptions{})
	if cerrdefs.IsNotFound(err) {
		return supervisor.Stats{}, fmt.Errorf("stats of instance %s: %w", h.ID, ErrGone)
	}
	if err != nil {
		return supervisor.Stats{}, fmt.Errorf("stats of instance %s: %w", h.ID, err)
	}
	defer res.Body.Close()
	var st container.StatsResponse
	if err := json.NewDecoder(res.Body).Decode(&st); err != nil {
		return supervisor.Stats{}, fmt.Errorf("stats of instance %s: decode: %w", h.ID, err)
	}
	// A stopped container answers with empty numbers.
	if st.Read.IsZero() || st.PidsStats.Current == 0 && st.MemoryStats.Usage == 0 {
		return supervisor.Stats{}, fmt.Errorf("stats of instance %s: %w", h.ID, ErrGone)
	}
	mem := st.MemoryStats.Usage
	inactive := st.MemoryStats.Stats["inactive_file"] // cgroup v2
	if v, ok := st.MemoryStats.Stats["total_inactive_file"]; ok {
		inactive = v // cgroup v1
	}
	if inactive < mem {
		mem -= inactive
	}
	return supervisor.Stats{
		CPUSeconds:  float64(st.CPUStats.CPUUsage.TotalUsage) / 1e9,
		MemoryBytes: int64(mem),
	}, nil
}
