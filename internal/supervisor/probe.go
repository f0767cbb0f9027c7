package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
)

// Probe defaults, for zero values in instance.Health.
const (
	defaultProbeInterval     = 2 * time.Second
	defaultProbeTimeout      = time.Second
	defaultProbeThreshold    = 3
	defaultLivenessThreshold = 6
)

// probeConfig is instance.Health with defaults applied.
type probeConfig struct {
	path      string // "" probes TCP
	interval  time.Duration
	timeout   time.Duration
	threshold int
	// liveness is the failures in a row that restart a once-ready
	// instance; 0 never restarts.
	liveness int
}

// probeConfigOf applies defaults. A negative LivenessThreshold turns
// liveness restarts off (zero means the default).
func probeConfigOf(h instance.Health) probeConfig {
	c := probeConfig{interval: h.Interval, timeout: h.Timeout, threshold: h.Threshold, liveness: h.LivenessThreshold}
	if h.Path != "" && !h.TCP {
		c.path = h.Path
		if !strings.HasPrefix(c.path, "/") {
			c.path = "/" + c.path
		}
	}
	if c.interval <= 0 {
		c.interval = defaultProbeInterval
	}
	if c.timeout <= 0 {
		c.timeout = defaultProbeTimeout
	}
	if c.threshold <= 0 {
		c.threshold = defaultProbeThreshold
	}
	switch {
	case c.liveness == 0:
		c.liveness = defaultLivenessThreshold
	case c.liveness < 0:
		c.liveness = 0
	}
	return c
}

// probeClient is shared by all HTTP probes. It keeps no idle connections
// (a probe must see whether the app accepts a new one) and does not
// follow redirects, since a 3xx already passes.
var probeClient = &http.Client{
	Transport: &http.Transport{
		Proxy:              nil,
		DisableKeepAlives:  true,
		DisableCompression: true,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// check probes an endpoint once.
func check(ctx context.Context, endpoint string, c probeConfig) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if c.path == "" {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", endpoint)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", endpoint, err)
		}
		return conn.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+endpoint+c.path, nil)
	if err != nil {
		return fmt.Errorf("probe %s: %w", c.path, err)
	}
	req.Header.Set("User-Agent", "skiff-probe")
	resp, err := probeClient.Do(req)
	if err != nil {
		// url.Error repeats the URL, which the message already names.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return fmt.Errorf("GET %s: %w", c.path, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("GET %s answered %s", c.path, resp.Status)
	}
	return nil
}

// probe checks one run of an instance at once and then every interval
// until ctx ends: Starting or Unready become Ready on a pass, Ready becomes
// Unready after threshold failures in a row, and an instance that was once
// ready is restarted after the liveness threshold of failures in a row.
func (s *Supervisor) probe(ctx context.Context, in *inst, h Handle, tmpl instance.Template) {
	c := probeConfigOf(tmpl.Health)
	fails := 0
	everReady := false
	// Until the first pass, probe sooner than the interval, backing off
	// from 50ms: a fast-starting app is in service within a moment of
	// listening, which is what makes a deploy quick.
	startup := 50 * time.Millisecond
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		err := check(ctx, h.Endpoint, c)
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			fails = 0
			everReady = true
			s.probePassed(in, tmpl)
		} else {
			fails++
			if s.probeFailed(in, tmpl, err, fails, c.threshold) && everReady && c.liveness > 0 && fails >= c.liveness {
				s.livenessFailed(ctx, in, h, tmpl, err, fails)
				return
			}
		}
		if everReady || startup >= c.interval {
			timer.Reset(c.interval)
			continue
		}
		timer.Reset(startup)
		startup *= 2
	}
}

func (s *Supervisor) probePassed(in *inst, tmpl instance.Template) {
	s.mu.Lock()
	was := in.state
	in.state = instance.Ready
	in.message = ""
	draining := in.draining
	s.mu.Unlock()
	if was == instance.Ready {
		return
	}
	s.notify.send(tmpl.App)
	if !draining {
		s.emit(Event{App: tmpl.App, Release: tmpl.Release, Instance: in.id, Kind: EventReady, Message: "passed its probe"})
	}
}

// probeFailed records a failure. It returns whether a liveness restart is
// allowed for this instance now (draining ones are left alone: they are on
// their way out, and a restart would only cut their last requests).
func (s *Supervisor) probeFailed(in *inst, tmpl instance.Template, err error, fails, threshold int) bool {
	s.mu.Lock()
	was := in.state
	if was == instance.Ready && fails >= threshold {
		in.state = instance.Unready
	}
	if in.state != instance.Ready {
		in.message = fmt.Sprintf("%d probe(s) failed in a row: %v", fails, err)
	}
	now := in.state
	draining := in.draining
	s.mu.Unlock()
	if was != now {
		s.notify.send(tmpl.App)
		if !draining {
			s.emit(Event{App: tmpl.App, Release: tmpl.Release, Instance: in.id, Kind: EventUnready,
				Message: fmt.Sprintf("%d probe(s) failed in a row: %v", fails, err)})
		}
	}
	return !draining
}

// livenessFailed stops a hung instance; its run loop sees the exit and
// restarts it like any other.
func (s *Supervisor) livenessFailed(ctx context.Context, in *inst, h Handle, tmpl instance.Template, err error, fails int) {
	s.log.Warn("instance failed its liveness probe; restarting it", "app", tmpl.App, "release", tmpl.Release, "instance", in.id, "failures", fails, "err", err)
	s.emit(Event{App: tmpl.App, Release: tmpl.Release, Instance: in.id, Kind: EventLivenessFailed,
		Message: fmt.Sprintf("%d probes failed in a row: %v; restarting", fails, err),
		Data:    map[string]any{"failures": fails}})
	if err := s.driver.Stop(ctx, h, s.opts.StopGrace); err != nil && ctx.Err() == nil {
		s.log.Error("could not stop an instance that failed its liveness probe", "instance", in.id, "err", err)
	}
}
