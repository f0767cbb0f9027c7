package spec

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strconv"
	"strings"

	"github.com/invopop/jsonschema"
)

// ErrInvalidQuantity is wrapped by every error of ParseQuantity.
var ErrInvalidQuantity = errors.New("invalid quantity")

// Quantity is an amount of bytes written the way Kubernetes writes memory:
// plain bytes ("268435456"), a binary suffix ("256Mi", "1Gi": powers of
// 1024), a decimal suffix ("512M", "1G": powers of 1000) or an exponent
// ("1e9"). It keeps the text the user wrote.
type Quantity string

// quantityPattern is the syntax ParseQuantity accepts. The exponent has at
// most two digits so that a hostile "1e999999999" cannot make the parser
// build a huge number.
var quantityPattern = regexp.MustCompile(`^([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]{1,2})|(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E))?$`)

// binarySuffix and decimalSuffix map each suffix to its power of 1024 and
// of 1000.
var (
	binarySuffix  = map[string]int64{"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
	decimalSuffix = map[string]int64{"k": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
)

// maxQuantityLen bounds the text ParseQuantity looks at; real quantities
// are a handful of characters.
const maxQuantityLen = 64

// ParseQuantity reads a Kubernetes-style quantity of bytes, rounding a
// fractional result up to a whole byte as Kubernetes does ("1.5Ki" is
// 1536, "0.5" is 1).
func ParseQuantity(s string) (int64, error) {
	if len(s) > maxQuantityLen {
		return 0, fmt.Errorf("%w: %d characters is too long for a quantity such as 256Mi", ErrInvalidQuantity, len(s))
	}
	m := quantityPattern.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%w %q: %s", ErrInvalidQuantity, s, quantityHint(s))
	}
	v, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, fmt.Errorf("%w %q: %s", ErrInvalidQuantity, s, quantityHint(s))
	}
	switch {
	case m[2] != "":
		exp, err := strconv.Atoi(m[2])
		if err != nil {
			return 0, fmt.Errorf("%w %q: exponent: %w", ErrInvalidQuantity, s, err)
		}
		scale := new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(abs(exp))), nil))
		if exp < 0 {
			scale.Inv(scale)
		}
		v.Mul(v, scale)
	case m[3] != "":
		base, power := int64(1024), binarySuffix[m[3]]
		if p, ok := decimalSuffix[m[3]]; ok {
			base, power = 1000, p
		}
		v.Mul(v, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(base), big.NewInt(power), nil)))
	}
	n := ceilRat(v)
	if !n.IsInt64() {
		return 0, fmt.Errorf("%w %q: more than %d bytes", ErrInvalidQuantity, s, int64(math.MaxInt64))
	}
	return n.Int64(), nil
}

// quantityHint says what to write instead, guessing the common mistake of
// writing "MB" or "GB".
func quantityHint(s string) string {
	for _, unit := range []string{"K", "M", "G", "T", "P", "E"} {
		for _, wrong := range []string{unit + "B", unit + "iB", strings.ToLower(unit) + "b", strings.ToLower(unit) + "ib", strings.ToLower(unit) + "i"} {
			num, ok := strings.CutSuffix(s, wrong)
			if !ok || num == "" {
				continue
			}
			binary, decimal := num+unit+"i", num+unit
			if unit == "K" {
				decimal = num + "k"
			}
			return fmt.Sprintf("did you mean %s (powers of 1024) or %s (powers of 1000)?", binary, decimal)
		}
	}
	return "expected bytes or a number with a suffix such as 256Mi, 1Gi, 512M or 1e9"
}

// ceilRat rounds v up to an integer.
func ceilRat(v *big.Rat) *big.Int {
	q, r := new(big.Int).QuoRem(v.Num(), v.Denom(), new(big.Int))
	if r.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	return q
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// Bytes is the quantity in bytes.
func (q Quantity) Bytes() (int64, error) {
	return ParseQuantity(string(q))
}

// JSONSchema describes a quantity for editors: a string with a suffix, or
// a plain number of bytes.
func (Quantity) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		OneOf: []*jsonschema.Schema{
			{Type: "string", Pattern: quantityPattern.String()},
			{Type: "number", Minimum: "0"},
		},
		Examples: []any{"256Mi", "1Gi", "512M"},
	}
}

// cpuPattern is what a CPU given as a string may look like: millicores
// ("500m") or a plain number of cores ("0.5").
var cpuPattern = regexp.MustCompile(`^(?:([0-9]+)m|([0-9]+(?:\.[0-9]*)?|\.[0-9]+))$`)

// parseCPU reads a CPU amount written as a string, in cores.
func parseCPU(s string) (float64, error) {
	m := cpuPattern.FindStringSubmatch(s)
	if m == nil || len(s) > maxQuantityLen {
		return 0, fmt.Errorf("invalid CPU %q: expected cores such as 0.5 or 2, or millicores such as 500m", s)
	}
	if m[1] != "" {
		milli, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			return 0, fmt.Errorf("invalid CPU %q: %w", s, err)
		}
		return milli / 1000, nil
	}
	cores, err := strconv.ParseFloat(m[2], 64)
	if err != nil {
		return 0, fmt.Errorf("invalid CPU %q: %w", s, err)
	}
	return cores, nil
}
