package docker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"
)

// DefaultHost is where Docker Engine listens unless DOCKER_HOST says
// otherwise.
const DefaultHost = "unix:///var/run/docker.sock"

// ErrUnreachable means Docker Engine does not answer.
var ErrUnreachable = errors.New("docker engine not reachable")

// UnreachableError says which engine did not answer and why, in words
// that tell a user what to do. It wraps ErrUnreachable.
type UnreachableError struct {
	Host   string
	Reason string
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("Docker Engine is not reachable at %s (%s): install and start it (e.g. apt-get install docker.io && systemctl start docker) or set DOCKER_HOST", e.Host, e.Reason)
}

func (e *UnreachableError) Unwrap() error { return ErrUnreachable }

// pingTimeout bounds one check that the engine answers.
const pingTimeout = 3 * time.Second

// Engine is a connection to one Docker Engine, made lazily: skiff starts
// without Docker, and Docker may come up after skiff. The driver and the
// image builder share one.
type Engine struct {
	host string

	mu  sync.Mutex
	cli *client.Client
}

// NewEngine returns an Engine for host ("unix:///path" or "tcp://addr");
// "" means $DOCKER_HOST, else DefaultHost. Nothing is dialled yet.
func NewEngine(host string) *Engine {
	if host == "" {
		host = os.Getenv("DOCKER_HOST")
	}
	if host == "" {
		host = DefaultHost
	}
	return &Engine{host: host}
}

// Host is the engine's address.
func (e *Engine) Host() string { return e.host }

// client returns the API client, creating it on first use. Creating it
// dials nothing; calls fail with the engine's own errors when it is down.
func (e *Engine) client() (*client.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cli != nil {
		return e.cli, nil
	}
	cli, err := client.New(client.WithHost(e.host), client.WithAPIVersionNegotiation())
	if err != nil {
		return nil, &UnreachableError{Host: e.host, Reason: err.Error()}
	}
	e.cli = cli
	return cli, nil
}

// Client returns the API client after checking that the engine answers;
// the error is an *UnreachableError when it does not.
func (e *Engine) Client(ctx context.Context) (*client.Client, error) {
	cli, err := e.client()
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, pingTimeout)
	defer cancel()
	if _, err := cli.Ping(pctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &UnreachableError{Host: e.host, Reason: reason(err)}
	}
	return cli, nil
}

// Ping checks that the engine answers.
func (e *Engine) Ping(ctx context.Context) error {
	_, err := e.Client(ctx)
	return err
}

// Close releases the client's connections.
func (e *Engine) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cli == nil {
		return nil
	}
	err := e.cli.Close()
	e.cli = nil
	return err
}

// reason shortens a connection error to its cause: the dial error when
// there is one, which names the socket and what the kernel said.
func reason(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Error()
	}
	return err.Error()
}

// RemoveNode force-removes every container of node. Tests use it to end
// the data plane a test server leaves running.
func (e *Engine) RemoveNode(ctx context.Context, node string) error {
	return e.RemoveLabelled(ctx, LabelNode+"="+node)
}

// RemoveLabelled force-removes every container with label ("key=value").
func (e *Engine) RemoveLabelled(ctx context.Context, label string) error {
	cli, err := e.Client(ctx)
	if err != nil {
		return err
	}
	res, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: make(client.Filters).Add("label", label)})
	if err != nil {
		return err
	}
	var errs []error
	for _, c := range res.Items {
		if _, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RemoveVolume removes a volume; one that is gone is no error.
func (e *Engine) RemoveVolume(ctx context.Context, name string) error {
	cli, err := e.Client(ctx)
	if err != nil {
		return err
	}
	if _, err := cli.VolumeRemove(ctx, name, client.VolumeRemoveOptions{Force: true}); err != nil && !cerrdefs.IsNotFound(err) {
		return err
	}
	return nil
}
