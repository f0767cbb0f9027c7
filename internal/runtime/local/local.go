// Package local is the runtime driver of a one-host skiff: it runs
// process apps with the process driver and container apps (a template
// with an Image) with the Docker driver, side by side under one
// supervisor. Start picks the driver by the template; every other call by
// the Handle, whose Ref says which driver made it.
//
// Docker is optional: without it, or while its engine does not answer,
// process apps run as ever and starting a container app fails with a
// message saying how to get Docker.
package local

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
	"github.com/skiff-sh/skiff/internal/runtime/docker"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

// Driver dispatches to the process and Docker drivers. It implements
// supervisor.Driver.
type Driver struct {
	process supervisor.Driver
	docker  supervisor.Driver
	// isDocker tells the Docker driver's handles from the process
	// driver's.
	isDocker func(supervisor.Handle) bool
	log      *slog.Logger
}

var _ supervisor.Driver = (*Driver)(nil)

// ErrNoDocker means a container app was started on a server without the
// Docker runtime.
var ErrNoDocker = errors.New("container apps need Docker Engine")

// Options configure a Driver.
type Options struct {
	// Process runs process apps. Required.
	Process supervisor.Driver
	// Docker runs container apps; nil refuses them.
	Docker supervisor.Driver
	// IsDocker tells whether a Handle was made by Docker. Default
	// docker.IsHandle.
	IsDocker func(supervisor.Handle) bool
	Logger   *slog.Logger
}

// New returns a Driver.
func New(opts Options) (*Driver, error) {
	if opts.Process == nil {
		return nil, errors.New("new local driver: a process driver is required")
	}
	if opts.IsDocker == nil {
		opts.IsDocker = docker.IsHandle
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Driver{process: opts.Process, docker: opts.Docker, isDocker: opts.IsDocker, log: opts.Logger.With("component", "local-driver")}, nil
}

// Capabilities are those both drivers share: exit codes of adopted
// instances are known only for containers, and limits are enforced where
// the process driver can.
func (d *Driver) Capabilities() supervisor.Capabilities {
	pc := d.process.Capabilities()
	return supervisor.Capabilities{Name: "local", ExitCodeOnRecover: false, Limits: pc.Limits}
}

// driverFor returns the driver of h.
func (d *Driver) driverFor(h supervisor.Handle) (supervisor.Driver, error) {
	if !d.isDocker(h) {
		return d.process, nil
	}
	if d.docker == nil {
		return nil, fmt.Errorf("instance %s: %w, and this server runs without it", h.ID, ErrNoDocker)
	}
	return d.docker, nil
}

// Start runs a template with an Image as a container, any other as a
// process.
func (d *Driver) Start(ctx context.Context, id string, t instance.Template) (supervisor.Handle, error) {
	if t.Image == "" {
		return d.process.Start(ctx, id, t)
	}
	if d.docker == nil {
		return supervisor.Handle{}, fmt.Errorf("start instance %s: %w, and this server runs without it", id, ErrNoDocker)
	}
	return d.docker.Start(ctx, id, t)
}

// Wait waits on the instance's own driver.
func (d *Driver) Wait(ctx context.Context, h supervisor.Handle) (instance.Exit, error) {
	drv, err := d.driverFor(h)
	if err != nil {
		return instance.Exit{}, err
	}
	return drv.Wait(ctx, h)
}

// Stop stops the instance with its own driver.
func (d *Driver) Stop(ctx context.Context, h supervisor.Handle, grace time.Duration) error {
	drv, err := d.driverFor(h)
	if err != nil {
		return err
	}
	return drv.Stop(ctx, h, grace)
}

// Stats reads the instance's resource use from its own driver.
func (d *Driver) Stats(ctx context.Context, h supervisor.Handle) (supervisor.Stats, error) {
	drv, err := d.driverFor(h)
	if err != nil {
		return supervisor.Stats{}, err
	}
	return drv.Stats(ctx, h)
}

// LogPath is the instance's log file, from its own driver.
func (d *Driver) LogPath(h supervisor.Handle) string {
	drv, err := d.driverFor(h)
	if err != nil {
		return d.process.LogPath(h)
	}
	return drv.LogPath(h)
}

// Cleanup removes what the instance's own driver kept.
func (d *Driver) Cleanup(ctx context.Context, h supervisor.Handle) error {
	drv, err := d.driverFor(h)
	if err != nil {
		return err
	}
	return drv.Cleanup(ctx, h)
}

// Recover merges what both drivers find. When Docker does not answer, its
// containers are not found now; they run on, and a Start of one of their
// instances later adopts the running container instead of making a
// second one.
func (d *Driver) Recover(ctx context.Context) ([]supervisor.Handle, error) {
	hs, err := d.process.Recover(ctx)
	if err != nil {
		return nil, err
	}
	if d.docker != nil {
		more, err := d.docker.Recover(ctx)
		switch {
		case errors.Is(err, docker.ErrUnreachable):
			d.log.Warn("containers cannot be recovered now; container apps start again once Docker answers", "err", err)
		case err != nil:
			return nil, err
		default:
			hs = append(hs, more...)
		}
	}
	slices.SortFunc(hs, func(a, b supervisor.Handle) int { return cmp.Compare(a.ID, b.ID) })
	return hs, nil
}
