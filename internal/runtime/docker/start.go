package docker

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

// LabelPort records the container port, so Recover knows which published
// port is the endpoint.
const LabelPort = "skiff.port"

// Docker's own log of a container is only a buffer between the app and
// skiff's log file: it is bounded, and big enough to cover a long
// absence of skiff.
var engineLog = container.LogConfig{Type: "json-file", Config: map[string]string{"max-size": "20m", "max-file": "3"}}

// Start creates and starts the container of instance id. A second Start of
// the same id finds the first one's container: a running one is adopted
// (the first Start's caller died before recording it), an exited one is
// replaced.
func (d *Driver) Start(ctx context.Context, id string, t instance.Template) (supervisor.Handle, error) {
	if err := checkTemplate(id, t); err != nil {
		return supervisor.Handle{}, fmt.Errorf("start instance %s: %w", id, err)
	}
	cli, err := d.engine.Client(ctx)
	if err != nil {
		return supervisor.Handle{}, fmt.Errorf("start instance %s: %w", id, err)
	}
	netID, err := d.ensureNetwork(ctx, cli)
	if err != nil {
		return supervisor.Handle{}, fmt.Errorf("start instance %s: %w", id, err)
	}
	for _, v := range t.Volumes {
		if _, err := cli.VolumeCreate(ctx, client.VolumeCreateOptions{
			Name:   VolumeName(t.App, v.Name),
			Labels: map[string]string{LabelApp: t.App},
		}); err != nil {
			return supervisor.Handle{}, fmt.Errorf("start instance %s: create volume %s: %w", id, VolumeName(t.App, v.Name), err)
		}
	}
	// A fresh container's output starts at its beginning.
	if err := os.Remove(d.posPath(id)); err != nil && !os.IsNotExist(err) {
		return supervisor.Handle{}, fmt.Errorf("start instance %s: %w", id, err)
	}
	logf, err := os.OpenFile(d.LogPath(supervisor.Handle{ID: id}), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return supervisor.Handle{}, fmt.Errorf("start instance %s: open log: %w", id, err)
	}
	logf.Close()

	opts := d.createOptions(id, t, netID)
	cid, err := d.create(ctx, cli, id, opts)
	if err != nil {
		return supervisor.Handle{}, fmt.Errorf("start instance %s: %w", id, err)
	}
	if _, err := cli.ContainerStart(ctx, cid, client.ContainerStartOptions{}); err != nil {
		_, _ = cli.ContainerRemove(context.WithoutCancel(ctx), cid, client.ContainerRemoveOptions{Force: true})
		return supervisor.Handle{}, fmt.Errorf("start instance %s: %w", id, startError(t, err))
	}
	h, running, err := d.inspect(ctx, cli, cid)
	if err != nil {
		return supervisor.Handle{}, fmt.Errorf("start instance %s: %w", id, err)
	}
	d.follow(h)
	if !running {
		// It exited at once; Wait reports how.
		d.log.Debug("instance exited right after its start", "instance", id)
	}
	d.log.Debug("instance started", "app", t.App, "release", t.Release, "instance", id, "container", cid, "endpoint", h.Endpoint)
	return h, nil
}

// checkTemplate rejects what cannot become a container.
func checkTemplate(id string, t instance.Template) error {
	switch {
	case !validName(id):
		return fmt.Errorf("%w: instance id %q must be letters, digits, '.', '_' or '-'", ErrBadTemplate, id)
	case t.Image == "":
		return fmt.Errorf("%w: release %d of %s has no image", ErrBadTemplate, t.Release, t.App)
	case t.Port <= 0 || t.Port > 65535:
		return fmt.Errorf("%w: release %d of %s has no port: a container needs a port to be routed (set port: in skiff.yaml)", ErrBadTemplate, t.Release, t.App)
	}
	for _, p := range t.Ports {
		if p <= 0 || p > 65535 {
			return fmt.Errorf("%w: release %d of %s publishes port %d: ports are 1-65535", ErrBadTemplate, t.Release, t.App, p)
		}
	}
	for _, v := range t.Volumes {
		if !validName(v.Name) || !strings.HasPrefix(v.Path, "/") {
			return fmt.Errorf("%w: release %d of %s mounts volume %q at %q: a volume needs a name of letters, digits, '.', '_' or '-' and an absolute path", ErrBadTemplate, t.Release, t.App, v.Name, v.Path)
		}
	}
	return nil
}

// published lists the container ports to publish: the app's port first,
// then the others, each once.
func published(t instance.Template) []int {
	ports := []int{t.Port}
	for _, p := range t.Ports {
		if !slices.Contains(ports, p) {
			ports = append(ports, p)
		}
	}
	return ports
}

// createOptions is the whole container of instance id.
func (d *Driver) createOptions(id string, t instance.Template, netID string) client.ContainerCreateOptions {
	exposed := network.PortSet{}
	// Published on loopback only: the edge is the only way in. An empty
	// HostPort lets the engine pick a free one.
	bindings := network.PortMap{}
	for _, p := range published(t) {
		port := network.MustParsePort(strconv.Itoa(p) + "/tcp")
		exposed[port] = struct{}{}
		bindings[port] = []network.PortBinding{{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: ""}}
	}
	labels := map[string]string{
		LabelNode:     d.nodeID,
		LabelApp:      t.App,
		LabelRelease:  strconv.Itoa(t.Release),
		LabelInstance: id,
		LabelPort:     strconv.Itoa(t.Port),
	}
	cfg := &container.Config{
		Image:        t.Image,
		Env:          containerEnv(id, t),
		Labels:       labels,
		ExposedPorts: exposed,
	}
	if len(t.Command) > 0 {
		cfg.Cmd = slices.Clone(t.Command)
	}
	hc := &container.HostConfig{
		PortBindings:   bindings,
		NetworkMode:    container.NetworkMode(netID),
		LogConfig:      engineLog,
		ReadonlyRootfs: t.ReadOnly,
		CapDrop:        slices.Clone(t.CapDrop),
	}
	if c := t.Resources.CPU; c > 0 {
		hc.NanoCPUs = int64(c * 1e9)
	}
	if m := t.Resources.MemoryBytes; m > 0 {
		hc.Memory = m
		// No swap on top: past its limit an app is killed, not slowed.
		hc.MemorySwap = m
	}
	for _, v := range t.Volumes {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeVolume, Source: VolumeName(t.App, v.Name), Target: v.Path})
	}
	return client.ContainerCreateOptions{
		Name:       d.containerName(id),
		Config:     cfg,
		HostConfig: hc,
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			netID: {Aliases: []string{t.App}},
		}},
	}
}

// containerEnv is the template's env plus what skiff sets, which the
// template cannot override.
func containerEnv(id string, t instance.Template) []string {
	env := maps.Clone(t.Env)
	if env == nil {
		env = map[string]string{}
	}
	env["PORT"] = strconv.Itoa(t.Port)
	env["SKIFF_APP"] = t.App
	env["SKIFF_RELEASE"] = strconv.Itoa(t.Release)
	env["SKIFF_INSTANCE"] = id
	out := make([]string, 0, len(env))
	for _, k := range slices.Sorted(maps.Keys(env)) {
		out = append(out, k+"="+env[k])
	}
	return out
}

// createTimeout bounds one container create.
const createTimeout = time.Minute

// create makes the container, replacing an exited one of the same
// instance and adopting a running one.
func (d *Driver) create(ctx context.Context, cli *client.Client, id string, opts client.ContainerCreateOptions) (string, error) {
	for attempt := 0; ; attempt++ {
		// The engine finishes a create whose caller hung up, so the call
		// is not cut short; a container made for a caller that gave up
		// meanwhile is removed rather than left behind, unseen by
		// whoever already cleaned up after the instance.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), createTimeout)
		res, err := cli.ContainerCreate(cctx, opts)
		cancel()
		if err == nil {
			if ctx.Err() != nil {
				_, _ = cli.ContainerRemove(context.WithoutCancel(ctx), res.ID, client.ContainerRemoveOptions{Force: true})
				return "", ctx.Err()
			}
			return res.ID, nil
		}
		switch {
		case cerrdefs.IsNotFound(err):
			return "", fmt.Errorf("%w: image %s not found: build it, or pull or load it into the engine (docker pull / docker load)", ErrBadTemplate, opts.Config.Image)
		case cerrdefs.IsConflict(err) && attempt == 0:
			old, err := cli.ContainerInspect(ctx, opts.Name, client.ContainerInspectOptions{})
			if err != nil {
				return "", fmt.Errorf("inspect the container already named %s: %w", opts.Name, err)
			}
			c := old.Container
			if c.Config == nil || c.Config.Labels[LabelNode] != d.nodeID || c.Config.Labels[LabelInstance] != id {
				return "", fmt.Errorf("a container not made by this skiff node is named %s: remove or rename it", opts.Name)
			}
			if c.State != nil && c.State.Running {
				return c.ID, nil
			}
			if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
				return "", fmt.Errorf("remove the exited container of the instance's last run: %w", err)
			}
		default:
			return "", fmt.Errorf("create container: %w", err)
		}
	}
}

// startError explains why the engine could not start a container.
//
// A taken port is rare: the engine picks ephemeral host ports itself and
// tries the next ones when one is taken (ten, in Docker 28), so it fails
// only when other programs hold a run of ports in the ephemeral range.
// The supervisor then tries again after its backoff.
func startError(t instance.Template, err error) error {
	msg := err.Error()
	// The engine reports a taken port only in words.
	if strings.Contains(msg, "port is already allocated") || strings.Contains(msg, "address already in use") {
		return fmt.Errorf("%w: the engine could not publish port %s of release %d of %s on 127.0.0.1: %v (something else holds ports in the ephemeral range; skiff tries again)",
			ErrPortInUse, portList(published(t)), t.Release, t.App, err)
	}
	return fmt.Errorf("start container: %w", err)
}

// inspect builds the Handle of a container and tells whether it runs.
func (d *Driver) inspect(ctx context.Context, cli *client.Client, cid string) (supervisor.Handle, bool, error) {
	res, err := cli.ContainerInspect(ctx, cid, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return supervisor.Handle{}, false, fmt.Errorf("container %s: %w", short(cid), ErrGone)
	}
	if err != nil {
		return supervisor.Handle{}, false, fmt.Errorf("inspect container %s: %w", short(cid), err)
	}
	c := res.Container
	if c.Config == nil || c.State == nil {
		return supervisor.Handle{}, false, fmt.Errorf("inspect container %s: the engine returned no config or state", short(cid))
	}
	labels := c.Config.Labels
	rel, err := strconv.Atoi(labels[LabelRelease])
	if err != nil {
		return supervisor.Handle{}, false, fmt.Errorf("container %s: label %s %q is not a release number", short(cid), LabelRelease, labels[LabelRelease])
	}
	h := supervisor.Handle{
		ID:      labels[LabelInstance],
		App:     labels[LabelApp],
		Release: rel,
		PID:     c.State.Pid,
		Ref:     RefPrefix + c.ID,
	}
	if t, err := time.Parse(time.RFC3339Nano, c.State.StartedAt); err == nil {
		h.StartedAt = t
	}
	if c.State.Running && c.NetworkSettings != nil {
		for p, binds := range c.NetworkSettings.Ports {
			if p.Proto() != network.TCP {
				continue
			}
			for _, b := range binds {
				if b.HostIP.Is4() && b.HostPort != "" {
					if h.Ports == nil {
						h.Ports = map[int]string{}
					}
					h.Ports[int(p.Num())] = net.JoinHostPort(b.HostIP.String(), b.HostPort)
					break
				}
			}
		}
		if port, err := strconv.Atoi(labels[LabelPort]); err == nil {
			h.Endpoint = h.Ports[port]
		}
	}
	return h, c.State.Running, nil
}

// ensureNetwork finds the apps' network, making it if missing, and
// returns its ID. Engines before API 1.44 allow two networks of one name,
// so when servers race to make it, every one settles on the oldest and
// removes its own extra; containers join by ID, never by an ambiguous name.
func (d *Driver) ensureNetwork(ctx context.Context, cli *client.Client) (string, error) {
	d.netMu.Lock()
	defer d.netMu.Unlock()
	if d.netID != "" {
		return d.netID, nil
	}
	find := func() (string, error) {
		res, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: make(client.Filters).Add("name", d.network)})
		if err != nil {
			return "", err
		}
		var best network.Summary
		for _, n := range res.Items {
			// The name filter matches substrings.
			if n.Name != d.network {
				continue
			}
			if best.ID == "" || n.Created.Before(best.Created) || (n.Created.Equal(best.Created) && n.ID < best.ID) {
				best = n
			}
		}
		return best.ID, nil
	}
	id, err := find()
	if err != nil {
		return "", fmt.Errorf("list networks: %w", err)
	}
	if id == "" {
		created, err := cli.NetworkCreate(ctx, d.network, client.NetworkCreateOptions{
			Driver: "bridge",
			Labels: map[string]string{"skiff": "1"},
		})
		if err != nil && !cerrdefs.IsConflict(err) {
			return "", fmt.Errorf("create network %s: %w", d.network, err)
		}
		if id, err = find(); err != nil || id == "" {
			return "", fmt.Errorf("find network %s after creating it: %v", d.network, err)
		}
		if created.ID != "" && created.ID != id {
			_, _ = cli.NetworkRemove(ctx, created.ID, client.NetworkRemoveOptions{})
		}
	}
	d.netID = id
	return id, nil
}

// short is a container ID as people see it.
func short(cid string) string {
	if len(cid) > 12 {
		return cid[:12]
	}
	return cid
}

// portList is ports as a user reads them: "8080, 25565".
func portList(ports []int) string {
	s := make([]string, len(ports))
	for i, p := range ports {
		s[i] = strconv.Itoa(p)
	}
	return strings.Join(s, ", ")
}
