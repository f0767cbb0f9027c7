package spec

import (
	"fmt"

	"github.com/goccy/go-yaml/ast"
	"github.com/invopop/jsonschema"
)

// Balancing policies of http.balance.
const (
	BalanceP2C        = "p2c"
	BalanceRoundRobin = "round_robin"
)

var httpFields = []string{"balance", "max_body", "h2c"}

// HTTP says how the edge serves the app's HTTP traffic.
type HTTP struct {
	// How requests spread over instances: p2c (default) sends each to
	// the less busy of two instances drawn at random; round_robin takes
	// them in turn.
	Balance string `json:"balance,omitempty"`
	// The largest request body accepted, such as 10Mi; a larger one is
	// answered 413. Default: no limit.
	MaxBody Quantity `json:"max_body,omitempty"`
	// Speak HTTP/2 without TLS (h2c) to the instances, as gRPC servers
	// expect, instead of HTTP/1.1. Default false.
	H2C bool `json:"h2c,omitempty"`
}

// MaxBodyBytes is the body limit in bytes, 0 for none. It is meant for a
// validated spec.
func (h *HTTP) MaxBodyBytes() int64 {
	if h == nil || h.MaxBody == "" {
		return 0
	}
	n, _ := h.MaxBody.Bytes()
	return n
}

func (d *decoder) http(path string, n ast.Node) *HTTP {
	entries, ok := d.mapping(path, n, "a mapping such as {balance: round_robin, max_body: 10Mi}")
	if !ok {
		return nil
	}
	h := &HTTP{}
	for _, e := range entries {
		switch e.key {
		case "balance":
			h.Balance, _ = d.str(e.path, e.value)
		case "max_body":
			h.MaxBody = d.memory(e.path, e.value)
		case "h2c":
			h.H2C, _ = d.bool(e.path, e.value)
		default:
			d.unknown(e, httpFields)
		}
	}
	return h
}

func (v *validator) http() {
	h := v.s.HTTP
	if h == nil {
		return
	}
	if h.Balance != "" || v.s.given("http.balance") {
		if h.Balance != BalanceP2C && h.Balance != BalanceRoundRobin {
			v.errorf("http.balance", "%s is not a balancing policy: use %s or %s", quote(h.Balance), BalanceP2C, BalanceRoundRobin)
		}
	}
	if h.MaxBody != "" || v.s.given("http.max_body") {
		n, err := h.MaxBody.Bytes()
		switch {
		case err != nil:
			v.errorf("http.max_body", "%v", err)
		case n < 1:
			v.errorf("http.max_body", "must be at least 1 byte, got %s (leave it out for no limit)", h.MaxBody)
		}
	}
}

// JSONSchemaExtend lists the balancing policies.
func (HTTP) JSONSchemaExtend(s *jsonschema.Schema) {
	b, _ := s.Properties.Get("balance")
	b.Enum = []any{BalanceP2C, BalanceRoundRobin}
	b.Default = BalanceP2C
	mb, _ := s.Properties.Get("max_body")
	mb.Examples = []any{fmt.Sprint("10Mi")}
}
