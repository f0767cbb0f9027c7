package process

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/skiff-sh/skiff/internal/supervisor"
)

// Stats sums CPU time and resident memory over the instance's process
// group, so an app that forks workers is measured whole.
func (d *Driver) Stats(ctx context.Context, h supervisor.Handle) (supervisor.Stats, error) {
	st, err := readStat(h.PID)
	if errors.Is(err, os.ErrNotExist) || (err == nil && (!sameProcess(h, st) || st.zombie())) {
		return supervisor.Stats{}, fmt.Errorf("stats of instance %s: %w", h.ID, ErrGone)
	}
	if err != nil {
		return supervisor.Stats{}, fmt.Errorf("stats of instance %s: %w", h.ID, err)
	}
	pids, err := listPIDs()
	if err != nil {
		return supervisor.Stats{}, fmt.Errorf("stats of instance %s: %w", h.ID, err)
	}
	page := int64(os.Getpagesize())
	var ticks uint64
	var rss int64
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return supervisor.Stats{}, fmt.Errorf("stats of instance %s: %w", h.ID, err)
		}
		s, err := readStat(pid)
		if err != nil || s.pgrp != h.PID {
			continue
		}
		ticks += s.utime + s.stime
		rss += s.rssPages * page
	}
	return supervisor.Stats{CPUSeconds: float64(ticks) / clockTicks, MemoryBytes: rss}, nil
}
