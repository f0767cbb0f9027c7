package spec

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goccy/go-yaml/ast"
	"github.com/invopop/jsonschema"
)

// Deploy strategies.
const (
	Rolling   = "rolling"
	BlueGreen = "blue-green"
	Canary    = "canary"
)

// Strategies lists the deploy strategies in the order the docs give them.
var Strategies = []string{Rolling, BlueGreen, Canary}

// PauseManual is the pause of a canary step that waits for skiff promote.
const PauseManual = "manual"

// Defaults of the deploy block.
const (
	DefaultMaxSurge       = 1
	DefaultMaxUnavailable = 0
	DefaultKeep           = 5 * time.Minute
	DefaultMaxErrorRate   = 1.0 // percent
	DefaultMinRequests    = 20
)

// DefaultSteps are a canary's steps when the spec gives none.
var DefaultSteps = []Step{{Weight: 10, Pause: "1m"}, {Weight: 50, Pause: "1m"}}

var (
	deployFields   = []string{"strategy", "max_surge", "max_unavailable", "auto_promote", "keep", "steps", "analysis"}
	stepFields     = []string{"weight", "pause"}
	analysisFields = []string{"max_error_rate", "max_p95", "check", "min_requests"}
)

// Deploy says how a new release replaces the running one.
type Deploy struct {
	// rolling (default): new instances replace old ones a few at a time.
	// blue-green: the new release comes up beside the old one, is checked
	// on its preview host (<release>.<app>.<domain>) and then takes all
	// traffic at once; the old instances are kept for keep, for a quick
	// rollback. canary: the new release takes a growing share of traffic
	// in steps, judged at each step by analysis, and is rolled back by
	// itself when it does worse.
	Strategy string `json:"strategy,omitempty"`
	// rolling: how many instances beyond replicas may run during a
	// deploy, 0-100. Default 1.
	MaxSurge *int `json:"max_surge,omitempty"`
	// rolling: how many instances below replicas may be ready during a
	// deploy, 0-100; not 0 together with max_surge 0. Default 0.
	MaxUnavailable *int `json:"max_unavailable,omitempty"`
	// blue-green: switch traffic as soon as the new release is ready and
	// its checks pass. false waits for skiff promote. Default true.
	AutoPromote *bool `json:"auto_promote,omitempty"`
	// blue-green: how long the old release's instances keep running,
	// without traffic, after the switch, 0s-24h. Default 5m.
	Keep Duration `json:"keep,omitempty"`
	// canary: the traffic shares the new release takes in turn, each held
	// for its pause, before it takes all traffic. Default
	// [{weight: 10%, pause: 1m}, {weight: 50%, pause: 1m}].
	Steps []Step `json:"steps,omitempty"`
	// canary and blue-green: what the new release is judged by before it
	// gets more traffic. Default: an error rate of at most 1%.
	Analysis *Analysis `json:"analysis,omitempty"`
}

// Step is one share of traffic a canary holds for a while.
type Step struct {
	// The share of requests sent to the new release: "10%" or 10, more
	// than 0 and less than 100. Required.
	Weight Percent `json:"weight"`
	// How long to hold it: a duration such as 1m, or manual to wait for
	// skiff promote. Default 1m.
	Pause string `json:"pause,omitempty"`
}

// Analysis judges a new release on the edge's live figures, against
// thresholds and against the release it replaces: a figure fails when it
// is over its threshold and worse than the stable release's.
type Analysis struct {
	// The largest share of the new release's requests that may fail (5xx
	// answers, or no answer at all), e.g. "1%" or 0.5. Default 1%.
	MaxErrorRate *Percent `json:"max_error_rate,omitempty"`
	// The slowest 95th-percentile response time allowed, e.g. 300ms.
	// Default: not judged.
	MaxP95 Duration `json:"max_p95,omitempty"`
	// A path, such as /healthz/deep, fetched from each new instance every
	// second during the rollout; anything but 2xx or 3xx fails it.
	Check string `json:"check,omitempty"`
	// How many requests the new release must have answered at a step
	// before its error rate and p95 are judged, 1-100000. Default 20.
	MinRequests int `json:"min_requests,omitempty"`
}

// Percent is a share written as "10%", "0.5%" or a bare number of percent.
type Percent float64

// ParsePercent reads "10%", "0.5%" or "10".
func ParsePercent(s string) (Percent, error) {
	f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("invalid percentage %q: expected e.g. 10%% or 0.5%%", s)
	}
	return Percent(f), nil
}

// String writes the share as ParsePercent reads it back.
func (p Percent) String() string {
	return strconv.FormatFloat(float64(p), 'f', -1, 64) + "%"
}

// MarshalJSON writes the share as a string such as "10%".
func (p Percent) MarshalJSON() ([]byte, error) { return json.Marshal(p.String()) }

// UnmarshalJSON reads a string such as "10%" or a number of percent.
func (p *Percent) UnmarshalJSON(data []byte) error {
	var f float64
	if err := json.Unmarshal(data, &f); err == nil {
		*p = Percent(f)
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("decode percentage: expected a string such as \"10%%\" or a number: %w", err)
	}
	v, err := ParsePercent(s)
	if err != nil {
		return fmt.Errorf("decode percentage: %w", err)
	}
	*p = v
	return nil
}

// percentPattern is what the JSON Schema accepts as a string percentage.
const percentPattern = `^([0-9]+(\.[0-9]*)?|\.[0-9]+)%?$`

// stepWeightPattern is a string percentage more than 0 and less than 100.
const stepWeightPattern = `^(0*[1-9][0-9]?(\.[0-9]*)?|0*\.[0-9]*[1-9][0-9]*)%?$`

// JSONSchema describes a percentage for editors.
func (Percent) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{OneOf: []*jsonschema.Schema{
		{Type: "number", Minimum: "0", Maximum: "100"},
		{Type: "string", Pattern: percentPattern},
	}, Examples: []any{"10%"}}
}

// PauseFor is the step's pause, and whether it waits for skiff promote
// instead. It is meant for a validated spec.
func (s Step) PauseFor() (d time.Duration, manual bool) {
	if s.Pause == PauseManual {
		return 0, true
	}
	if s.Pause == "" {
		return time.Minute, false
	}
	v, _ := ParseDuration(s.Pause)
	return v.Std(), false
}

// deploy decodes the deploy block.
func (d *decoder) deploy(path string, n ast.Node) *Deploy {
	entries, ok := d.mapping(path, n, "a mapping such as {strategy: canary}")
	if !ok {
		return nil
	}
	dep := &Deploy{}
	for _, e := range entries {
		switch e.key {
		case "strategy":
			dep.Strategy, _ = d.str(e.path, e.value)
		case "max_surge":
			if v, ok := d.int(e.path, e.value); ok {
				dep.MaxSurge = &v
			}
		case "max_unavailable":
			if v, ok := d.int(e.path, e.value); ok {
				dep.MaxUnavailable = &v
			}
		case "auto_promote":
			if v, ok := d.bool(e.path, e.value); ok {
				dep.AutoPromote = &v
			}
		case "keep":
			dep.Keep, _ = d.duration(e.path, e.value)
		case "steps":
			dep.Steps = d.steps(e.path, e.value)
		case "analysis":
			dep.Analysis = d.analysis(e.path, e.value)
		default:
			d.unknown(e, deployFields)
		}
	}
	return dep
}

func (d *decoder) steps(path string, n ast.Node) []Step {
	elems, ok := d.list(path, n, "a list of steps such as [{weight: 10%, pause: 1m}]")
	if !ok {
		return nil
	}
	steps := make([]Step, len(elems))
	for i, el := range elems {
		p := index(path, i)
		entries, ok := d.mapping(p, el, "a mapping such as {weight: 10%, pause: 1m}")
		if !ok {
			continue
		}
		for _, e := range entries {
			switch e.key {
			case "weight":
				steps[i].Weight, _ = d.percent(e.path, e.value)
			case "pause":
				steps[i].Pause = d.pause(e.path, e.value)
			default:
				d.unknown(e, stepFields)
			}
		}
	}
	return steps
}

func (d *decoder) analysis(path string, n ast.Node) *Analysis {
	entries, ok := d.mapping(path, n, "a mapping such as {max_error_rate: 1%, max_p95: 300ms}")
	if !ok {
		return nil
	}
	a := &Analysis{}
	for _, e := range entries {
		switch e.key {
		case "max_error_rate":
			if p, ok := d.percent(e.path, e.value); ok {
				a.MaxErrorRate = &p
			}
		case "max_p95":
			a.MaxP95, _ = d.duration(e.path, e.value)
		case "check":
			a.Check, _ = d.str(e.path, e.value)
		case "min_requests":
			a.MinRequests, _ = d.int(e.path, e.value)
		default:
			d.unknown(e, analysisFields)
		}
	}
	return a
}

// percent decodes "10%" or a number of percent.
func (d *decoder) percent(path string, n ast.Node) (Percent, bool) {
	v, ok := d.value(n, path)
	if !ok {
		return 0, false
	}
	switch x := v.(type) {
	case *ast.IntegerNode, *ast.FloatNode, *ast.StringNode:
		p, err := ParsePercent(scalarText(x))
		if err != nil {
			d.bad(path, err.Error())
			return 0, false
		}
		return p, true
	}
	d.bad(path, fmt.Sprintf("expected a percentage such as 10%%, got %s", describe(v)))
	return 0, false
}

// pause decodes a duration or "manual"; validation checks which.
func (d *decoder) pause(path string, n ast.Node) string {
	v, ok := d.value(n, path)
	if !ok {
		return ""
	}
	switch x := v.(type) {
	case *ast.StringNode:
		return x.Value
	case *ast.IntegerNode, *ast.FloatNode:
		d.bad(path, fmt.Sprintf("expected a duration such as 1m or manual, got %s: add a unit, e.g. %ss", describe(x), scalarText(x)))
	default:
		d.bad(path, fmt.Sprintf("expected a duration such as 1m or manual, got %s", describe(v)))
	}
	return ""
}

// maxKeep bounds how long a blue-green deploy keeps the old release.
const maxKeep = 24 * time.Hour

// deploy checks the deploy block: each field belongs to one strategy.
func (v *validator) deploy() {
	dep := v.s.Deploy
	if dep == nil {
		return
	}
	strategy := dep.Strategy
	switch {
	case strategy == "" && v.s.given("deploy.strategy"):
		v.errorf("deploy.strategy", "must not be empty: use one of %s", strings.Join(Strategies, ", "))
	case strategy == "":
		strategy = Rolling
	case !slices.Contains(Strategies, strategy):
		v.errorf("deploy.strategy", "%s is not a strategy: use one of %s", quote(strategy), strings.Join(Strategies, ", "))
		return
	}
	only := func(field, s string) bool {
		set := v.s.given("deploy."+field) || v.deploySet(field)
		if set && strategy != s {
			v.errorf("deploy."+field, "applies to strategy: %s only, not %s: remove it or set strategy: %s", s, strategy, s)
			return false
		}
		return set
	}
	surge, unavail := DefaultMaxSurge, DefaultMaxUnavailable
	if only("max_surge", Rolling) {
		surge = *dep.MaxSurge
		if surge < 0 || surge > MaxReplicas {
			v.errorf("deploy.max_surge", "must be between 0 and %d, got %d", MaxReplicas, surge)
		}
	}
	if only("max_unavailable", Rolling) {
		unavail = *dep.MaxUnavailable
		if unavail < 0 || unavail > MaxReplicas {
			v.errorf("deploy.max_unavailable", "must be between 0 and %d, got %d", MaxReplicas, unavail)
		}
	}
	if strategy == Rolling && surge == 0 && unavail == 0 {
		v.errorf("deploy.max_surge", "max_surge and max_unavailable are both 0, so no instance could ever be replaced: allow one of them, e.g. max_surge: 1")
	}
	only("auto_promote", BlueGreen)
	if only("keep", BlueGreen) && (dep.Keep < 0 || dep.Keep.Std() > maxKeep) {
		v.errorf("deploy.keep", "must be between 0s and 24h, got %s", dep.Keep)
	}
	if only("steps", Canary) {
		v.steps(dep.Steps)
	}
	if dep.Analysis != nil && strategy == Rolling {
		v.errorf("deploy.analysis", "applies to strategy: canary or blue-green, not rolling: remove it or choose one of them")
	}
	if dep.Analysis != nil {
		v.analysis(dep.Analysis)
	}
}

// deploySet tells whether a spec built in Go (not parsed) set field.
func (v *validator) deploySet(field string) bool {
	dep := v.s.Deploy
	switch field {
	case "max_surge":
		return dep.MaxSurge != nil
	case "max_unavailable":
		return dep.MaxUnavailable != nil
	case "auto_promote":
		return dep.AutoPromote != nil
	case "keep":
		return dep.Keep != 0
	case "steps":
		return dep.Steps != nil
	}
	return false
}

func (v *validator) steps(steps []Step) {
	if len(steps) == 0 {
		v.errorf("deploy.steps", "must not be empty: give at least one step such as {weight: 10%%, pause: 1m}, or leave steps out for the default")
		return
	}
	prev := Percent(0)
	for i, st := range steps {
		p := index("deploy.steps", i)
		switch {
		case st.Weight == 0 && !v.s.given(join(p, "weight")):
			v.fieldMissing(p, "weight", "required: give the share of traffic for this step, e.g. weight: 10%")
		case st.Weight <= 0 || st.Weight >= 100:
			v.errorf(join(p, "weight"), "must be more than 0%% and less than 100%%, got %s (the release takes all traffic after the last step)", st.Weight)
		case st.Weight <= prev:
			v.errorf(join(p, "weight"), "must grow from step to step: %s follows %s", st.Weight, prev)
		default:
			prev = st.Weight
		}
		if st.Pause != "" && st.Pause != PauseManual {
			d, err := ParseDuration(st.Pause)
			switch {
			case err != nil:
				v.errorf(join(p, "pause"), "invalid pause %s: expected a duration such as 1m, or manual to wait for skiff promote", quote(st.Pause))
			case d < 0 || d.Std() > maxKeep:
				v.errorf(join(p, "pause"), "must be between 0s and 24h, got %s", st.Pause)
			}
		}
	}
}

func (v *validator) analysis(a *Analysis) {
	if r := a.MaxErrorRate; r != nil && (*r < 0 || *r > 100) {
		v.errorf("deploy.analysis.max_error_rate", "must be between 0%% and 100%%, got %s", *r)
	}
	if a.MaxP95 < 0 || (a.MaxP95 == 0 && v.s.given("deploy.analysis.max_p95")) {
		v.errorf("deploy.analysis.max_p95", "must be more than 0s, got %s (leave it out to not judge latency)", a.MaxP95)
	}
	if a.Check != "" || v.s.given("deploy.analysis.check") {
		if !strings.HasPrefix(a.Check, "/") || strings.ContainsFunc(a.Check, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			v.errorf("deploy.analysis.check", "%s is not a path: give one starting with / and without spaces, e.g. /healthz/deep", quote(a.Check))
		}
	}
	if a.MinRequests != 0 || v.s.given("deploy.analysis.min_requests") {
		if a.MinRequests < 1 || a.MinRequests > 100000 {
			v.errorf("deploy.analysis.min_requests", "must be between 1 and 100000, got %d", a.MinRequests)
		}
	}
}

// Rollout is a validated spec's deploy block with every default filled
// in, for the rollout controller.
type Rollout struct {
	Strategy       string
	MaxSurge       int
	MaxUnavailable int
	AutoPromote    bool
	Keep           time.Duration
	Steps          []Step
	MaxErrorRate   float64 // percent
	MaxP95         time.Duration
	Check          string
	MinRequests    int
}

// Rollout returns the deploy block with its defaults. override, when not
// empty, replaces the strategy (skiff deploy --strategy); fields of
// another strategy then take their defaults.
func (s *Spec) Rollout(override string) Rollout {
	dep := s.Deploy
	if dep == nil {
		dep = &Deploy{}
	}
	r := Rollout{
		Strategy:       dep.Strategy,
		MaxSurge:       DefaultMaxSurge,
		MaxUnavailable: DefaultMaxUnavailable,
		AutoPromote:    true,
		Keep:           DefaultKeep,
		Steps:          DefaultSteps,
		MaxErrorRate:   DefaultMaxErrorRate,
		MinRequests:    DefaultMinRequests,
	}
	if r.Strategy == "" {
		r.Strategy = Rolling
	}
	own := override == "" || override == r.Strategy
	if override != "" {
		r.Strategy = override
	}
	if own {
		if dep.MaxSurge != nil {
			r.MaxSurge = *dep.MaxSurge
		}
		if dep.MaxUnavailable != nil {
			r.MaxUnavailable = *dep.MaxUnavailable
		}
		if dep.AutoPromote != nil {
			r.AutoPromote = *dep.AutoPromote
		}
		if dep.Keep != 0 || s.given("deploy.keep") {
			r.Keep = dep.Keep.Std()
		}
		if len(dep.Steps) > 0 {
			r.Steps = dep.Steps
		}
	}
	if a := dep.Analysis; a != nil {
		if a.MaxErrorRate != nil {
			r.MaxErrorRate = float64(*a.MaxErrorRate)
		}
		r.MaxP95, r.Check = a.MaxP95.Std(), a.Check
		if a.MinRequests != 0 {
			r.MinRequests = a.MinRequests
		}
	}
	return r
}

// JSONSchemaExtend adds the strategies, ranges and defaults.
func (Deploy) JSONSchemaExtend(s *jsonschema.Schema) {
	prop := func(name string) *jsonschema.Schema {
		p, _ := s.Properties.Get(name)
		return p
	}
	strategy := prop("strategy")
	strategy.Enum = []any{Rolling, BlueGreen, Canary}
	strategy.Default = Rolling
	for name, def := range map[string]int{"max_surge": DefaultMaxSurge, "max_unavailable": DefaultMaxUnavailable} {
		p := prop(name)
		p.Minimum, p.Maximum = "0", json.Number(strconv.Itoa(MaxReplicas))
		p.Default = def
	}
	prop("auto_promote").Default = true
	prop("keep").Default = DefaultKeep.String()
	prop("steps").MinItems = uint64Ptr(1)
}

// JSONSchemaExtend says a step's pause is a duration or manual.
func (Step) JSONSchemaExtend(s *jsonschema.Schema) {
	s.Required = []string{"weight"}
	weight, _ := s.Properties.Get("weight")
	*weight = jsonschema.Schema{
		Description: weight.Description,
		OneOf: []*jsonschema.Schema{
			{Type: "number", ExclusiveMinimum: "0", ExclusiveMaximum: "100"},
			{Type: "string", Pattern: stepWeightPattern},
		},
		Examples: []any{"10%"},
	}
	pause, _ := s.Properties.Get("pause")
	pause.OneOf = []*jsonschema.Schema{{Pattern: durationPattern}, {Const: PauseManual}}
	pause.Default = "1m"
}

// JSONSchemaExtend adds the ranges of the analysis settings.
func (Analysis) JSONSchemaExtend(s *jsonschema.Schema) {
	check, _ := s.Properties.Get("check")
	check.Pattern = `^/[^\s]*$`
	minReq, _ := s.Properties.Get("min_requests")
	minReq.Minimum, minReq.Maximum = "1", "100000"
	minReq.Default = DefaultMinRequests
}
