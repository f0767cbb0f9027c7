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
// only the ones it recorded. Several processes may claim one id; all are
// returned, except a claim's own descendants.
func (d *Driver) Recover(ctx context.Context) ([]supervisor.Handle, error) {
	pids, err := listPIDs()
	if err != nil {
		return nil, fmt.Errorf("recover instances: %w", err)
	}
	var found []supervisor.Handle
	parent := make(map[int]int)
	claims := make(map[int]string)
	for _, pid := range pids {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("recover instances: %w", err)
		}
		st, err := readStat(pid)
		if err != nil || st.zombie() {
			continue
		}
		parent[pid] = st.ppid
		if st.pgrp != pid {
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
		found = append(found, h)
		claims[pid] = h.ID
	}
	// An instance's own child that made itself a group leader carries the
	// same id: it belongs to the instance and is no claim of its own.
	out := make([]supervisor.Handle, 0, len(found))
	for _, h := range found {
		if !descends(h.PID, h.ID, parent, claims) {
			out = append(out, h)
		}
	}
	slices.SortFunc(out, func(a, b supervisor.Handle) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// descends reports whether an ancestor of pid claims instance id.
func descends(pid int, id string, parent map[int]int, claims map[int]string) bool {
	for range 256 {
		pp, ok := parent[pid]
		if !ok || pp <= 1 {
			return false
		}
		if claims[pp] == id {
			return true
		}
		pid = pp
	}
	return false
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
