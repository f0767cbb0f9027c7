package edge

import (
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// ReleaseHeader names a release a request asks for, such as
// "X-Skiff-Release: 7": a split route sends it to that release's
// backends whatever the weights say, so a new release can be checked
// before it takes traffic.
const ReleaseHeader = "X-Skiff-Release"

// stickyCookie is the cookie that pins a client to its place in a split
// route's traffic, per app.
const stickyCookie = "skiff_"

// buckets is how many places a split has: weights are shares of them.
const buckets = 10000

// ReleaseWeight is one release's share of a split route.
type ReleaseWeight struct {
	Release int
	// Weight is the release's share of requests against the other
	// releases of the route; 0 gives it none (only requests naming it by
	// ReleaseHeader reach it).
	Weight int
}

// split divides a route's requests between releases. Each release is a
// route of its own, with the parent's host, prefix, limits and balancing
// over that release's backends only.
//
// A request lands on a bucket in [0, buckets): the one its sticky cookie
// carries, or a random one. Releases own consecutive ranges of buckets in
// order newest first, so as a new release's weight grows its range only
// grows: a client the canary already served stays on it, and a client of
// the stable release moves over only when the canary's range reaches its
// bucket.
type split struct {
	groups []splitGroup // newest release first
	total  int64
	// sticky sets the cookie on clients that came without one.
	sticky bool
	cookie string
}

type splitGroup struct {
	release int
	weight  int64
	// end is the first bucket past this release's range.
	end int64
	rt  *route
}

// compileSplit gives rt one child route per release of ws, over rt's
// targets of that release. Targets of releases ws does not list get no
// requests.
func compileSplit(rt *route, ws []ReleaseWeight, sticky bool) {
	sp := &split{sticky: sticky, cookie: stickyCookie + rt.app}
	for _, w := range ws {
		child := &route{host: rt.host, prefix: rt.prefix, app: rt.app, balancer: rt.balancer, maxBody: rt.maxBody}
		for _, tg := range rt.targets {
			if tg.b.release == w.Release {
				child.targets = append(child.targets, tg)
			}
		}
		weight := min(max(int64(w.Weight), 0), maxWeight)
		sp.total += weight
		sp.groups = append(sp.groups, splitGroup{release: w.Release, weight: weight, rt: child})
	}
	slices.SortStableFunc(sp.groups, func(a, b splitGroup) int { return b.release - a.release })
	var sum int64
	for i := range sp.groups {
		g := &sp.groups[i]
		sum += g.weight
		if sp.total > 0 {
			g.end = sum * buckets / sp.total
		}
	}
	rt.split = sp
}

// choose returns the route of the release the request goes to, and the
// Set-Cookie value to answer with ("" for none). asked is the request's
// ReleaseHeader and cookie its sticky cookie's value, each "" when absent.
// A route without a split is returned as it is.
func (rt *route) choose(asked, cookie string) (*route, string) {
	sp := rt.split
	if sp == nil {
		return rt, ""
	}
	if asked != "" {
		if n, err := strconv.Atoi(asked); err == nil {
			for _, g := range sp.groups {
				if g.release == n {
					return g.rt, ""
				}
			}
		}
	}
	if sp.total == 0 {
		return sp.groups[0].rt, ""
	}
	bucket, err := strconv.ParseInt(cookie, 10, 64)
	set := ""
	if err != nil || bucket < 0 || bucket >= buckets {
		bucket = rand.Int64N(buckets)
		if sp.sticky {
			set = sp.cookie + "=" + strconv.FormatInt(bucket, 10) + "; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax"
		}
	}
	for _, g := range sp.groups {
		if bucket < g.end {
			return g.rt, set
		}
	}
	return sp.groups[len(sp.groups)-1].rt, set
}

// chooseHTTP is choose for a net/http request, setting the cookie on w.
func (rt *route) chooseHTTP(w http.ResponseWriter, r *http.Request) *route {
	if rt.split == nil {
		return rt
	}
	var cookie string
	if c, err := r.Cookie(rt.split.cookie); err == nil {
		cookie = c.Value
	}
	child, set := rt.choose(strings.TrimSpace(r.Header.Get(ReleaseHeader)), cookie)
	if set != "" {
		w.Header().Set("Set-Cookie", set)
	}
	return child
}
