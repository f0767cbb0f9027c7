package process

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"

	"github.com/skiff-sh/skiff/internal/supervisor"
)

// Recover finds the processes that claim to be instances of this node:
// every living process group leader whose environment carries SKIFF_NODE
// equal to this node and an instance id. Any process may make that claim,
// so each Handle carries what the claim cannot fake (the pid, and in Ref
// the start time and uid the kernel reports), and the supervisor adopts
// only the ones it recorded.
func (d *Driver) Recover(ctx context.Context) ([]supervisor.Handle, error) {
	pids, err := listPIDs()
	if err != nil {
		return nil, fmt.Errorf("recover instances: %w", err)
	}
	found := make(map[string]supervisor.Handle)
	ticks := make(map[string]uint64)
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("recover instances: %w", err)
		}
		st, err := readStat(pid)
		if err != nil || st.pgrp != pid || st.zombie() {
			continue
		}
		env, err := readEnviron(pid)
		if err != nil || env["SKIFF_NODE"] != d.nodeID || env["SKIFF_INSTANCE"] == "" {
			continue
		}
		uid, err := processUID(pid)
		if err != nil {
			continue
		}
		h, err := handleFromEnv(pid, st, uid, env)
		if err != nil {
			d.log.Warn("skipping a process that looks like an instance", "pid", pid, "err", err)
			continue
		}
		// An instance's own child that made itself a group leader carries
		// the same id; the instance is the one that started first.
		if t, ok := ticks[h.ID]; ok && t <= st.startTicks {
			continue
		}
		found[h.ID] = h
		ticks[h.ID] = st.startTicks
	}
	out := make([]supervisor.Handle, 0, len(found))
	for _, h := range found {
		out = append(out, h)
	}
	slices.SortFunc(out, func(a, b supervisor.Handle) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// handleFromEnv rebuilds a Handle from what Start put in the environment.
func handleFromEnv(pid int, st procStat, uid uint32, env map[string]string) (supervisor.Handle, error) {
	rel, err := strconv.Atoi(env["SKIFF_RELEASE"])
	if err != nil {
		return supervisor.Handle{}, fmt.Errorf("instance %s: SKIFF_RELEASE %q: %w", env["SKIFF_INSTANCE"], env["SKIFF_RELEASE"], err)
	}
	port, err := strconv.Atoi(env["PORT"])
	if err != nil || port <= 0 || port > 65535 {
		return supervisor.Handle{}, fmt.Errorf("instance %s: PORT %q is not a port", env["SKIFF_INSTANCE"], env["PORT"])
	}
	started, err := startTime(st.startTicks)
	if err != nil {
		return supervisor.Handle{}, err
	}
	return supervisor.Handle{
		ID:        env["SKIFF_INSTANCE"],
		App:       env["SKIFF_APP"],
		Release:   rel,
		Endpoint:  net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		PID:       pid,
		StartedAt: started,
		Ref:       startRef(st.startTicks, uid),
	}, nil
}
