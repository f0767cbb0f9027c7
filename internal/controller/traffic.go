package controller

import (
	"strconv"

	"github.com/skiff-sh/skiff/internal/spec"
)

// fullWeight is a release's weight when it takes every request; a
// canary's share of it is its percentage in hundredths.
const fullWeight = 10000

// routing says how the app's requests are routed at this point of its
// rollout: the hosts, the spec's http settings and the releases' shares.
func (r *rollout) routing() routing {
	rt := routing{hosts: r.app.Hosts}
	if r.spec != nil && r.spec.HTTP != nil {
		rt.balance = r.spec.HTTP.Balance
		rt.maxBody = r.spec.HTTP.MaxBodyBytes()
		rt.h2c = r.spec.HTTP.H2C
	}
	if r.rel == nil {
		return rt
	}
	_, curReady := r.curSize()
	oldLive, _ := r.oldCounts()
	if !r.pending() {
		// Done (or failed back to this one): the target takes everything
		// once it can. Until then, whatever is ready serves.
		if oldLive > 0 && curReady > 0 {
			rt.weights = map[int]int{r.rel.Number: fullWeight}
		}
		return rt
	}
	if r.plan.Strategy == spec.Rolling || oldLive == 0 {
		return rt
	}
	if h := r.previewHost(); h != "" {
		rt.preview = map[string]int{h: r.rel.Number}
	}
	switch r.plan.Strategy {
	case spec.BlueGreen:
		if r.rel.Step >= 1 {
			rt.weights = map[int]int{r.rel.Number: fullWeight}
			return rt
		}
		rt.weights = r.oldWeights(fullWeight)
		rt.weights[r.rel.Number] = 0
	case spec.Canary:
		share := r.canaryShare()
		rt.weights = r.oldWeights(fullWeight - share)
		rt.weights[r.rel.Number] = share
		rt.sticky = true
	}
	if len(rt.weights) == 1 || sum(rt.weights) == 0 {
		// Nothing old is ready: the share of the old releases would go
		// nowhere, so everything ready serves.
		rt.weights = nil
	}
	return rt
}

// canaryShare is the target release's weight at its step, 0 before the
// first step's weights took effect.
func (r *rollout) canaryShare() int {
	if r.rel.StepAt.IsZero() {
		return 0
	}
	if r.rel.Step >= len(r.plan.Steps) {
		return fullWeight
	}
	return int(float64(r.plan.Steps[r.rel.Step].Weight) * fullWeight / 100)
}

// oldWeights gives total to the stable release, and none to other old
// releases (such as a canary the new release superseded). When the
// stable release has no ready instance, total is shared by the old
// releases' ready instances instead.
func (r *rollout) oldWeights(total int) map[int]int {
	w := map[int]int{}
	_, ready := r.oldCounts()
	stableReady := 0
	for _, set := range r.old {
		if set.Release == r.app.Stable {
			stableReady = set.Ready()
		}
	}
	for _, set := range r.old {
		switch {
		case stableReady > 0 && set.Release == r.app.Stable:
			w[set.Release] = total
		case stableReady == 0 && ready > 0:
			w[set.Release] = total * set.Ready() / ready
		default:
			w[set.Release] = 0
		}
	}
	return w
}

// previewHost reaches only the target release: "<release>.<app's first
// host>", e.g. 7.hello.club.example.com.
func (r *rollout) previewHost() string {
	if len(r.app.Hosts) == 0 {
		return ""
	}
	return strconv.Itoa(r.rel.Number) + "." + r.app.Hosts[0]
}

func sum(m map[int]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
