package controller

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/skiff-sh/skiff/internal/edge"
	"github.com/skiff-sh/skiff/internal/instance"
)

// analysisInterval is how often a rollout under analysis is judged.
const analysisInterval = time.Second

// checkFailLimit failed checks in a row fail a rollout.
const checkFailLimit = 3

// Figures are what a rollout's analysis saw of the new release (and of
// the stable release beside it) since the current step began.
type Figures struct {
	Step     int           `json:"step"`
	Window   time.Duration `json:"window"`
	Requests int64         `json:"requests"`
	Errors   int64         `json:"errors"`
	// ErrorRate and StableErrorRate are in percent.
	ErrorRate       float64       `json:"error_rate"`
	P95             time.Duration `json:"p95"`
	StableRequests  int64         `json:"stable_requests"`
	StableErrorRate float64       `json:"stable_error_rate"`
	StableP95       time.Duration `json:"stable_p95"`
	// CheckFailures counts failed checks in a row.
	CheckFailures int `json:"check_failures,omitempty"`
}

// track is what the controller remembers of one release's rollout
// between syncs: how far it came and when, what its analysis saw, which
// pauses it announced. It is only memory: after a restart a rollout's
// analysis starts its window again, which can only delay a step.
type track struct {
	mu sync.Mutex
	// progress is the most instances seen ready, and when.
	progress progressMark
	// judging is the step whose window began at base.
	judging    int
	at         time.Time
	base, stab edge.Stats
	figures    *Figures
	checkFails int
	announced  map[int]bool
}

// progressMark is the most instances of a release seen ready, and when.
type progressMark struct {
	ready int
	at    time.Time
}

func (c *Controller) track(app string, rel int) *track {
	key := app + "/" + strconv.Itoa(rel)
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.tracks[key]
	if !ok {
		t = &track{judging: -1, announced: map[int]bool{}}
		c.tracks[key] = t
	}
	return t
}

// forget drops what the controller remembers of a finished rollout.
func (c *Controller) forget(app string, rel int) {
	c.mu.Lock()
	delete(c.tracks, app+"/"+strconv.Itoa(rel))
	c.mu.Unlock()
}

// moved records how far a release's deploy has come and returns when it
// last moved on: a deploy fails when it stands still too long, not when it
// is merely long.
func (c *Controller) moved(app string, rel, ready int) time.Time {
	t := c.track(app, rel)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.progress.at.IsZero() || ready > t.progress.ready {
		t.progress = progressMark{ready: ready, at: time.Now()}
	}
	return t.progress.at
}

// announce reports whether step's pause is yet to be announced, and
// marks it announced.
func (t *track) announce(step int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.announced[step] {
		return false
	}
	t.announced[step] = true
	return true
}

// analyse judges the new release on the edge's figures since its step
// began: a figure fails when it is over its threshold and worse than the
// stable release's. With fewer than min_requests answers nothing is
// judged yet. It returns why the rollout fails, with the figures, or "".
func (r *rollout) analyse() (string, map[string]any) {
	cur, stable := r.instanceIDs()
	now := r.c.cfg.Edge.Stats(cur)
	nowStable := r.c.cfg.Edge.Stats(stable)
	t := r.c.track(r.app.Name, r.rel.Number)
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.judging != r.rel.Step {
		t.judging, t.at, t.base, t.stab = r.rel.Step, time.Now(), now, nowStable
	}
	cs, ss := now.Sub(t.base), nowStable.Sub(t.stab)
	f := &Figures{
		Step: r.rel.Step, Window: time.Since(t.at).Round(time.Millisecond),
		Requests: max(cs.Requests, 0), Errors: max(cs.Errors, 0),
		ErrorRate: 100 * cs.ErrorRate(), P95: cs.Percentile(0.95),
		StableRequests: max(ss.Requests, 0), StableErrorRate: 100 * ss.ErrorRate(), StableP95: ss.Percentile(0.95),
		CheckFailures: t.checkFails,
	}
	t.figures = f
	if f.Requests < int64(r.plan.MinRequests) {
		return "", nil
	}
	data := map[string]any{
		"step": r.rel.Step, "requests": f.Requests, "errors": f.Errors,
		"error_rate": round2(f.ErrorRate), "p95_ms": f.P95.Milliseconds(),
		"stable_requests": f.StableRequests, "stable_error_rate": round2(f.StableErrorRate), "stable_p95_ms": f.StableP95.Milliseconds(),
	}
	where := fmt.Sprintf("canary analysis failed at step %d (%s of requests) after %s", r.rel.Step+1, r.plan.Steps[r.rel.Step].Weight, f.Window)
	back := fmt.Sprintf("traffic is back on release %d", r.app.Stable)
	if f.ErrorRate > r.plan.MaxErrorRate && f.ErrorRate > f.StableErrorRate {
		data["max_error_rate"] = r.plan.MaxErrorRate
		return fmt.Sprintf("%s: error rate %.2f%% (%d of %d requests) is over max_error_rate %g%% (stable release: %.2f%%); %s",
			where, f.ErrorRate, f.Errors, f.Requests, r.plan.MaxErrorRate, f.StableErrorRate, back), data
	}
	if r.plan.MaxP95 > 0 && f.P95 > r.plan.MaxP95 && f.P95 > f.StableP95 {
		data["max_p95_ms"] = r.plan.MaxP95.Milliseconds()
		return fmt.Sprintf("%s: p95 response time %s over %d requests is over max_p95 %s (stable release: %s); %s",
			where, f.P95, f.Requests, r.plan.MaxP95, f.StableP95, back), data
	}
	return "", nil
}

func round2(f float64) float64 {
	return float64(int64(f*100+0.5)) / 100
}

// instanceIDs lists the new release's instances and the others'.
func (r *rollout) instanceIDs() (cur, stable []string) {
	if r.cur != nil {
		for _, in := range r.cur.Instances {
			cur = append(cur, in.ID)
		}
	}
	for _, set := range r.old {
		for _, in := range set.Instances {
			stable = append(stable, in.ID)
		}
	}
	return cur, stable
}

// checkClient fetches analysis checks; it keeps no connections, as a
// check must see whether an instance accepts a new one.
var checkClient = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
}

// checks fetches the plan's check path from every ready instance of the
// new release. Failures in a row up to checkFailLimit hold the rollout
// (stop) and come back a second later; at the limit the rollout fails.
func (r *rollout) checks(ctx context.Context) (stop bool, err error) {
	if r.plan.Check == "" || r.cur == nil {
		return false, nil
	}
	var problem string
	for _, in := range r.cur.Instances {
		if in.State != instance.Ready {
			continue
		}
		if msg := check(ctx, in.Endpoint, r.plan.Check); msg != "" {
			problem = fmt.Sprintf("instance %s: %s", in.ID, msg)
			break
		}
	}
	t := r.c.track(r.app.Name, r.rel.Number)
	t.mu.Lock()
	if problem == "" {
		t.checkFails = 0
	} else {
		t.checkFails++
	}
	fails := t.checkFails
	t.mu.Unlock()
	if problem == "" {
		return false, nil
	}
	if fails >= checkFailLimit {
		return true, r.fail(ctx, fmt.Sprintf("analysis check GET %s failed %d times in a row: %s; traffic stays on release %d",
			r.plan.Check, fails, problem, r.app.Stable), map[string]any{"check": r.plan.Check, "failures": fails})
	}
	r.c.queue.AddAfter(r.app.Name, analysisInterval)
	return true, nil
}

// check fetches path from endpoint and says what was wrong, or "".
func check(ctx context.Context, endpoint, path string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+endpoint+path, nil)
	if err != nil {
		return err.Error()
	}
	req.Header.Set("User-Agent", "skiff-analysis")
	res, err := checkClient.Do(req)
	if err != nil {
		return err.Error()
	}
	res.Body.Close()
	if res.StatusCode >= 400 {
		return "answered " + res.Status
	}
	return ""
}
