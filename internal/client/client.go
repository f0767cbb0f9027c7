// Package client is the Go client of skiff's /v1 API, used by the CLI and
// by tests. It speaks to a server over its unix socket or over TCP with a
// bearer token, and returns API errors as *api.Error.
package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/skiff-sh/skiff/internal/api"
	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/edgefeed"
)

// Client talks to one skiff server.
type Client struct {
	base  string
	token string
	http  *http.Client
}

// New returns a client for server, either "unix:///path/to/api.sock" or an
// http(s) URL. token may be empty for the unix socket.
func New(server, token string) (*Client, error) {
	c := &Client{token: token}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	switch {
	case strings.HasPrefix(server, "unix://"):
		path := strings.TrimPrefix(server, "unix://")
		tr.Proxy = nil
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		}
		c.base = "http://skiff"
	case strings.HasPrefix(server, "http://") || strings.HasPrefix(server, "https://"):
		c.base = strings.TrimSuffix(server, "/")
	default:
		return nil, fmt.Errorf("server %q: use unix:///path/to/api.sock or http://host:port", server)
	}
	c.http = &http.Client{Transport: tr}
	return c, nil
}

// ErrUnreachable wraps failures to reach the server at all.
var ErrUnreachable = errors.New("cannot reach the skiff server")

func (c *Client) do(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("%w at %s: %v (is `skiff server` running? set --server or SKIFF_SERVER)", ErrUnreachable, c.base, err)
	}
	if resp.StatusCode >= 400 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var e api.Error
	if err := json.Unmarshal(data, &e); err != nil || e.Code == "" {
		return &api.Error{Code: api.CodeInternal, Message: fmt.Sprintf("server answered %s: %s", resp.Status, bytes.TrimSpace(data))}
	}
	return &e
}

// call does a JSON round trip; in and out may be nil.
func (c *Client) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	ct := ""
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body, ct = bytes.NewReader(data), "application/json"
	}
	resp, err := c.do(ctx, method, path, body, ct)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("decode answer of %s %s: %w", method, path, err)
	}
	return nil
}

// Health checks that the server answers.
func (c *Client) Health(ctx context.Context) error {
	return c.call(ctx, http.MethodGet, "/v1/health", nil, nil)
}

// Apps lists the apps.
func (c *Client) Apps(ctx context.Context) ([]api.App, error) {
	var out []api.App
	return out, c.call(ctx, http.MethodGet, "/v1/apps", nil, &out)
}

// App shows one app with its instances and recent events.
func (c *Client) App(ctx context.Context, name string) (api.AppStatus, error) {
	var out api.AppStatus
	return out, c.call(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(name), nil, &out)
}

// Releases lists an app's releases, newest first.
func (c *Client) Releases(ctx context.Context, app string) ([]api.Release, error) {
	var out []api.Release
	return out, c.call(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(app)+"/releases", nil, &out)
}

// Release shows one release, its spec included.
func (c *Client) Release(ctx context.Context, app string, n int) (api.Release, error) {
	var out api.Release
	return out, c.call(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(app)+"/releases/"+strconv.Itoa(n), nil, &out)
}

// Deploy uploads a spec and the app's packed directory as a new release.
func (c *Client) Deploy(ctx context.Context, specFile string, spec []byte, artifact io.Reader) (api.Release, error) {
	return c.DeployWith(ctx, specFile, spec, artifact, "")
}

// DeployWith is Deploy with the spec's deploy strategy replaced by
// strategy for this release ("" keeps it).
func (c *Client) DeployWith(ctx context.Context, specFile string, spec []byte, artifact io.Reader, strategy string) (api.Release, error) {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		err := func() error {
			part, err := mw.CreateFormFile("spec", specFile)
			if err != nil {
				return err
			}
			if _, err := part.Write(spec); err != nil {
				return err
			}
			part, err = mw.CreateFormFile("artifact", "artifact.tar.gz")
			if err != nil {
				return err
			}
			if _, err := io.Copy(part, artifact); err != nil {
				return err
			}
			return mw.Close()
		}()
		pw.CloseWithError(err)
	}()
	path := "/v1/releases"
	if strategy != "" {
		path += "?strategy=" + url.QueryEscape(strategy)
	}
	resp, err := c.do(ctx, http.MethodPost, path, pr, mw.FormDataContentType())
	pr.Close()
	if err != nil {
		return api.Release{}, err
	}
	defer resp.Body.Close()
	var out api.Release
	return out, json.NewDecoder(resp.Body).Decode(&out)
}

// Rollback creates a release from an earlier one (0: the last good one).
func (c *Client) Rollback(ctx context.Context, app string, to int) (api.Release, error) {
	var out api.Release
	return out, c.call(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/rollback", api.RollbackRequest{To: to}, &out)
}

// Promote lets the app's rollout go past its current pause or gate; with
// all, to the end at once.
func (c *Client) Promote(ctx context.Context, app string, all bool) (api.Release, error) {
	var out api.Release
	return out, c.call(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/promote", api.PromoteRequest{All: all}, &out)
}

// Abort ends the app's rollout in progress; the stable release takes all
// traffic back.
func (c *Client) Abort(ctx context.Context, app string) (api.Release, error) {
	var out api.Release
	return out, c.call(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/abort", nil, &out)
}

// Rollout reports where the app's latest rollout stands.
func (c *Client) Rollout(ctx context.Context, app string) (api.RolloutStatus, error) {
	var out api.RolloutStatus
	return out, c.call(ctx, http.MethodGet, "/v1/apps/"+url.PathEscape(app)+"/rollout", nil, &out)
}

// Scale sets an app's replica count.
func (c *Client) Scale(ctx context.Context, app string, n int) (api.App, error) {
	var out api.App
	return out, c.call(ctx, http.MethodPost, "/v1/apps/"+url.PathEscape(app)+"/scale", api.ScaleRequest{Replicas: &n}, &out)
}

// Destroy stops an app and deletes it with its releases and logs.
func (c *Client) Destroy(ctx context.Context, app string) error {
	return c.call(ctx, http.MethodDelete, "/v1/apps/"+url.PathEscape(app), nil, nil)
}

// LogQuery selects log lines.
type LogQuery struct {
	Since   string // "10m" or an RFC 3339 time
	Tail    int
	Follow  bool
	Release int
}

// Logs streams an app's log lines to fn until the server ends the stream
// (or, with Follow, until ctx ends).
func (c *Client) Logs(ctx context.Context, app string, q LogQuery, fn func(api.LogLine) error) error {
	v := url.Values{}
	if q.Since != "" {
		v.Set("since", q.Since)
	}
	if q.Tail > 0 {
		v.Set("tail", strconv.Itoa(q.Tail))
	}
	if q.Release > 0 {
		v.Set("release", strconv.Itoa(q.Release))
	}
	if q.Follow {
		v.Set("follow", "1")
	}
	return stream(ctx, c, "/v1/apps/"+url.PathEscape(app)+"/logs?"+v.Encode(), fn)
}

// EventQuery selects events.
type EventQuery struct {
	App     string
	Release int
	After   int64
	Follow  bool
}

// Events lists events, or with Follow streams them to fn as they happen.
func (c *Client) Events(ctx context.Context, q EventQuery, fn func(api.Event) error) error {
	v := url.Values{}
	if q.App != "" {
		v.Set("app", q.App)
	}
	if q.Release > 0 {
		v.Set("release", strconv.Itoa(q.Release))
	}
	if q.After > 0 {
		v.Set("after", strconv.FormatInt(q.After, 10))
	}
	path := "/v1/events?" + v.Encode()
	if q.Follow {
		return stream(ctx, c, path+"&follow=1", fn)
	}
	var evs []api.Event
	if err := c.call(ctx, http.MethodGet, path, nil, &evs); err != nil {
		return err
	}
	for _, e := range evs {
		if err := fn(e); err != nil {
			return err
		}
	}
	return nil
}

// EdgeRoutes streams route snapshots for the edge process called name to
// fn until the stream ends or fails.
func (c *Client) EdgeRoutes(ctx context.Context, name string, fn func(*edge.Snapshot) error) error {
	return stream(ctx, c, "/v1/edge/routes?name="+url.QueryEscape(name), fn)
}

// EdgeAck reports what the edge process called name serves.
func (c *Client) EdgeAck(ctx context.Context, name string, a edgefeed.Ack) error {
	return c.call(ctx, http.MethodPost, "/v1/edge/ack?name="+url.QueryEscape(name), a, nil)
}

// Edges lists the edge processes that follow the server.
func (c *Client) Edges(ctx context.Context) ([]edgefeed.EdgeStatus, error) {
	var out []edgefeed.EdgeStatus
	return out, c.call(ctx, http.MethodGet, "/v1/edges", nil, &out)
}

// stream decodes a newline-delimited JSON answer, skipping keep-alive
// blank lines.
func stream[T any](ctx context.Context, c *Client, path string, fn func(T) error) error {
	resp, err := c.do(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	// A line is one event or log line, or a whole route snapshot, which
	// with thousands of routes runs to megabytes.
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var v T
		if err := json.Unmarshal(line, &v); err != nil {
			return fmt.Errorf("decode stream %s: %w", path, err)
		}
		if err := fn(v); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return ctx.Err()
}

// WaitHealthy polls the server until it answers or timeout passes.
func (c *Client) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := c.Health(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(50 * time.Millisecond):
		}
	}
}
