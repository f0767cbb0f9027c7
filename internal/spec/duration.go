package spec

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/invopop/jsonschema"
)

// Duration is a length of time written as Go writes it: "2s", "500ms",
// "1m30s", "1h".
type Duration time.Duration

// durationPattern is what the JSON Schema accepts: one or more numbers,
// each with a unit, as time.ParseDuration reads them (without a sign,
// since no duration in a spec may be negative).
const durationPattern = `^([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h))*$`

// ParseDuration reads a duration such as "2s" or "1m30s".
func ParseDuration(s string) (Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q: expected e.g. 2s or 1m30s", s)
	}
	return Duration(d), nil
}

// Std is the duration as a time.Duration.
func (d Duration) Std() time.Duration {
	return time.Duration(d)
}

// String writes the duration so that ParseDuration reads it back.
func (d Duration) String() string {
	return time.Duration(d).String()
}

// MarshalJSON writes the duration as a string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON reads a string such as "1m30s".
func (d *Duration) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf("decode duration: expected a string such as 2s: %w", err)
	}
	v, err := ParseDuration(s)
	if err != nil {
		return fmt.Errorf("decode duration: %w", err)
	}
	*d = v
	return nil
}

// JSONSchema describes a duration for editors.
func (Duration) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:        "string",
		Pattern:     durationPattern,
		Description: "A duration such as 500ms, 2s, 1m30s or 1h.",
		Examples:    []any{"2s", "1m30s"},
	}
}
