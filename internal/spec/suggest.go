package spec

import (
	"fmt"
	"slices"
	"strings"
)

// synonyms maps names people bring from other tools to skiff's field.
var synonyms = map[string]string{
	"cmd":          "command",
	"entrypoint":   "command",
	"run":          "command",
	"args":         "command",
	"environment":  "env",
	"vars":         "env",
	"scale":        "replicas",
	"instances":    "replicas",
	"healthcheck":  "health",
	"health_check": "health",
	"probe":        "health",
	"host":         "hosts",
	"hostname":     "hosts",
	"domain":       "hosts",
	"domains":      "hosts",
	"limits":       "resources",
}

// unknown reports a field that is not one of known, suggesting the field
// the user most likely meant.
func (d *decoder) unknown(e entry, known []string) {
	parent := strings.TrimSuffix(strings.TrimSuffix(e.path, e.key), ".")
	candidates := known
	if parent == "" {
		// "imag" is more likely a typo of a field not supported yet than
		// of anything else; the user then learns both things.
		candidates = slices.Concat(known, unsupportedFields)
	}
	msg := fmt.Sprintf("unknown field %s", quote(e.key))
	switch {
	case suggest(e.key, candidates) != "":
		meant := suggest(e.key, candidates)
		msg += fmt.Sprintf(" (did you mean %q?)", meant)
		d.suggested[join(parent, meant)] = true
	case parent == "" && slices.Contains(healthFields, e.key):
		msg += ": it belongs under health:"
	case parent == "" && slices.Contains(resourcesFields, e.key):
		msg += ": it belongs under resources:"
	default:
		msg += ": expected one of " + strings.Join(known, ", ")
	}
	d.fail(e.at, parent, msg)
}

// suggest returns the field of known closest to key, or "" when none is
// close enough to be a likely typo.
func suggest(key string, known []string) string {
	lower := strings.ToLower(key)
	if s, ok := synonyms[lower]; ok && slices.Contains(known, s) {
		return s
	}
	best, bestDist := "", -1
	for _, k := range known {
		if dist := editDistance(lower, k); bestDist < 0 || dist < bestDist {
			best, bestDist = k, dist
		}
	}
	// Up to one edit in three characters is a typo; more is another word.
	if best == "" || bestDist > max(1, len(lower)/3) {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
