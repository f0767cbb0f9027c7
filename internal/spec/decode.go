package spec

import (
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/token"
)

// decoder turns YAML nodes into Go values. It never stops at a problem: it
// records it, leaves the value zero and goes on, so that one run reports
// everything wrong with the file.
type decoder struct {
	file string
	errs []*Error
	// pos is where each path was written; it becomes Spec.pos.
	pos map[string]position
	// failed holds the paths whose value could not be decoded, so that
	// validation does not report them a second time as missing or empty.
	failed map[string]bool
	// suggested holds the fields an unknown key was taken for a typo of,
	// so that "cmd: x" is not also reported as a missing command.
	suggested map[string]bool
}

// fail records a problem at an explicit position.
func (d *decoder) fail(at position, path, msg string) {
	d.errs = append(d.errs, &Error{File: d.file, Line: at.line, Column: at.col, Path: path, Message: msg})
}

// bad records that the value at path is of the wrong kind or unreadable.
// The error sits where path was written, like every error about a field.
func (d *decoder) bad(path, msg string) {
	d.failed[path] = true
	d.fail(d.pos[path], path, msg)
}

// shadows reports whether a validation error at path repeats a decoding
// error already reported for path or for a field containing it.
func (d *decoder) shadows(path string) bool {
	for p := path; ; {
		if d.failed[p] {
			return true
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			return false
		}
		p = p[:i]
	}
}

// join makes the path of a field inside the mapping at path.
func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// index makes the path of an element of the list at path.
func index(path string, i int) string {
	return fmt.Sprintf("%s[%d]", path, i)
}

// nodePos is where a node starts in the file. A block mapping's own token
// is the first ':', so its first key stands for it instead.
func nodePos(n ast.Node) position {
	if n == nil {
		return position{}
	}
	switch x := n.(type) {
	case *ast.MappingNode:
		if !x.IsFlowStyle && len(x.Values) > 0 {
			return nodePos(x.Values[0])
		}
	case *ast.MappingValueNode:
		if x.Key != nil {
			return nodePos(x.Key)
		}
	}
	tk := n.GetToken()
	if tk == nil || tk.Position == nil {
		return position{}
	}
	return position{tk.Position.Line, tk.Position.Column}
}

// value strips anchors and tags off n. Aliases and tags other than YAML's
// own are reported: a skiff.yaml is short enough to write out,
// and following aliases would let a few bytes expand into a huge document.
// The node is nil, with true, for a missing value.
func (d *decoder) value(n ast.Node, path string) (ast.Node, bool) {
	for {
		switch x := n.(type) {
		case nil:
			return nil, true
		case *ast.AnchorNode:
			n = x.Value
		case *ast.AliasNode:
			d.bad(path, fmt.Sprintf("aliases (%s) are not supported in skiff.yaml: write the value out", strings.TrimSpace(x.String())))
			return nil, false
		case *ast.TagNode:
			tag := ""
			if x.Start != nil {
				tag = x.Start.Value
			}
			switch tag {
			case "!!str":
				// An explicit string tag makes any scalar a string, as in
				// "!!str 80".
				if v, ok := x.Value.(ast.ScalarNode); ok && !isNull(v) {
					return &ast.StringNode{BaseNode: &ast.BaseNode{}, Token: v.GetToken(), Value: scalarText(v)}, true
				}
				n = x.Value
			case "!!int", "!!float", "!!bool", "!!null", "!!map", "!!seq":
				n = x.Value
			default:
				d.bad(path, fmt.Sprintf("tag %s is not supported in skiff.yaml: remove it", tag))
				return nil, false
			}
		default:
			return n, true
		}
	}
}

// isNull reports whether n is a null or a missing value.
func isNull(n ast.Node) bool {
	if n == nil {
		return true
	}
	_, ok := n.(*ast.NullNode)
	return ok
}

func isMapping(n ast.Node) bool {
	switch n.(type) {
	case *ast.MappingNode, *ast.MappingValueNode:
		return true
	}
	return false
}

// isQuoted reports whether a scalar was written in quotes, so messages can
// tell the user to remove them.
func isQuoted(n ast.Node) bool {
	tk := n.GetToken()
	return tk != nil && (tk.Type == token.DoubleQuoteType || tk.Type == token.SingleQuoteType)
}

// scalarText is the text of a scalar as written (without quotes).
func scalarText(n ast.Node) string {
	switch x := n.(type) {
	case *ast.StringNode:
		return x.Value
	case *ast.LiteralNode:
		if x.Value != nil {
			return x.Value.Value
		}
		return ""
	}
	if tk := n.GetToken(); tk != nil {
		return tk.Value
	}
	return ""
}

// describe names a node's kind and value for messages: `string "80a"`,
// `integer 5`, `a list`.
func describe(n ast.Node) string {
	switch x := n.(type) {
	case nil:
		return "nothing"
	case *ast.StringNode, *ast.LiteralNode:
		return "string " + quote(scalarText(x))
	case *ast.IntegerNode:
		return "integer " + scalarText(x)
	case *ast.FloatNode, *ast.InfinityNode, *ast.NanNode:
		return "number " + scalarText(x)
	case *ast.BoolNode:
		return "boolean " + scalarText(x)
	case *ast.NullNode:
		if x.Token != nil && x.Token.Type == token.ImplicitNullType {
			return "nothing"
		}
		return "null"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	}
	return "a " + n.Type().String()
}

// maxQuoted bounds how much of a user's value a message repeats.
const maxQuoted = 64

// quote quotes s for a message, shortening it when long.
func quote(s string) string {
	if r := []rune(s); len(r) > maxQuoted {
		s = string(r[:maxQuoted]) + "..."
	}
	return strconv.Quote(s)
}

// entry is one field of a mapping.
type entry struct {
	key   string
	path  string
	at    position
	value ast.Node
}

// entries lists the fields of a mapping in file order, recording where each
// was written. It reports keys that repeat or are not plain scalars and
// leaves them out; what is a duplicate is decided here because the parser
// would stop at the first one.
func (d *decoder) entries(n ast.Node, path string) []entry {
	var values []*ast.MappingValueNode
	switch x := n.(type) {
	case *ast.MappingNode:
		values = x.Values
	case *ast.MappingValueNode:
		values = []*ast.MappingValueNode{x}
	}
	seen := map[string]position{}
	var out []entry
	for _, mv := range values {
		if mv == nil {
			continue
		}
		at := nodePos(mv.Key)
		key, ok := d.key(mv.Key, at, path)
		if !ok {
			continue
		}
		child := join(path, key)
		if first, dup := seen[key]; dup {
			d.fail(at, child, fmt.Sprintf("duplicate key: already given at line %d; remove one", first.line))
			continue
		}
		seen[key] = at
		d.pos[child] = at
		out = append(out, entry{key: key, path: child, at: at, value: mv.Value})
	}
	return out
}

// key returns the text of a mapping key written at at. Keys are field
// names, so only scalars qualify; an anchor or a tag on one is ignored.
func (d *decoder) key(n ast.Node, at position, path string) (string, bool) {
	for {
		switch x := n.(type) {
		case *ast.MappingKeyNode:
			n = x.Value
		case *ast.AnchorNode:
			n = x.Value
		case *ast.TagNode:
			n = x.Value
		case *ast.MergeKeyNode:
			d.fail(at, path, "merge keys (<<) are not supported in skiff.yaml: write the fields out")
			return "", false
		case *ast.AliasNode:
			d.fail(at, path, fmt.Sprintf("aliases (%s) are not supported in skiff.yaml: write the key out", strings.TrimSpace(x.String())))
			return "", false
		case *ast.StringNode, *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode:
			return scalarText(x), true
		default:
			d.fail(at, path, fmt.Sprintf("expected a field name, got %s", describe(n)))
			return "", false
		}
	}
}

// mapping decodes the value at path as a mapping, treating an empty value
// as absent. It reports anything else; ok is false then and when absent.
func (d *decoder) mapping(path string, n ast.Node, what string) ([]entry, bool) {
	v, ok := d.value(n, path)
	if !ok || isNull(v) {
		return nil, false
	}
	if !isMapping(v) {
		d.bad(path, fmt.Sprintf("expected %s, got %s", what, describe(v)))
		return nil, false
	}
	return d.entries(v, path), true
}

// list decodes the value at path as a sequence, recording where each
// element was written, treating an empty value as absent. It reports
// anything else.
func (d *decoder) list(path string, n ast.Node, what string) ([]ast.Node, bool) {
	v, ok := d.value(n, path)
	if !ok || isNull(v) {
		return nil, false
	}
	seq, isSeq := v.(*ast.SequenceNode)
	if !isSeq {
		msg := fmt.Sprintf("expected %s, got %s", what, describe(v))
		if _, isStr := v.(*ast.StringNode); isStr {
			msg += fmt.Sprintf(": write [%s] for a list of one", scalarText(v))
		}
		d.bad(path, msg)
		return nil, false
	}
	for i, el := range seq.Values {
		d.pos[index(path, i)] = nodePos(el)
	}
	return seq.Values, true
}

// str decodes a string. Numbers and booleans are reported rather than
// converted, since VERSION: 1.10 silently becoming "1.1" is worse than
// being asked to quote it.
func (d *decoder) str(path string, n ast.Node) (string, bool) {
	v, ok := d.value(n, path)
	if !ok {
		return "", false
	}
	switch x := v.(type) {
	case *ast.StringNode, *ast.LiteralNode:
		return scalarText(x), true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		d.bad(path, fmt.Sprintf("expected a string, got %s: quote it (%s)", describe(x), strconv.Quote(scalarText(x))))
	default:
		d.bad(path, fmt.Sprintf("expected a string, got %s", describe(v)))
	}
	return "", false
}

// integerText matches what a user means as an integer but YAML read as a
// string because it does not fit 64 bits.
var integerText = regexp.MustCompile(`^[-+]?[0-9]+$`)

// int decodes an integer.
func (d *decoder) int(path string, n ast.Node) (int, bool) {
	v, ok := d.value(n, path)
	if !ok {
		return 0, false
	}
	switch x := v.(type) {
	case *ast.IntegerNode:
		switch i := x.Value.(type) {
		case int64:
			if i >= math.MinInt && i <= math.MaxInt {
				return int(i), true
			}
		case uint64:
			if i <= math.MaxInt {
				return int(i), true
			}
		}
		d.bad(path, fmt.Sprintf("%s is out of range", scalarText(x)))
	case *ast.StringNode:
		switch {
		case isQuoted(x) && integerText.MatchString(x.Value):
			d.bad(path, fmt.Sprintf("expected an integer, got string %s: remove the quotes", quote(x.Value)))
		case integerText.MatchString(x.Value):
			d.bad(path, fmt.Sprintf("%s is out of range", x.Value))
		default:
			d.bad(path, fmt.Sprintf("expected an integer, got %s", describe(x)))
		}
	default:
		d.bad(path, fmt.Sprintf("expected an integer, got %s", describe(v)))
	}
	return 0, false
}

// bool decodes true or false.
func (d *decoder) bool(path string, n ast.Node) (bool, bool) {
	v, ok := d.value(n, path)
	if !ok {
		return false, false
	}
	switch x := v.(type) {
	case *ast.BoolNode:
		return x.Value, true
	case *ast.StringNode:
		if isQuoted(x) && (strings.EqualFold(x.Value, "true") || strings.EqualFold(x.Value, "false")) {
			d.bad(path, fmt.Sprintf("expected true or false, got string %s: remove the quotes", quote(x.Value)))
			return false, false
		}
	}
	d.bad(path, fmt.Sprintf("expected true or false, got %s", describe(v)))
	return false, false
}

// duration decodes a duration such as 2s.
func (d *decoder) duration(path string, n ast.Node) (Duration, bool) {
	v, ok := d.value(n, path)
	if !ok {
		return 0, false
	}
	switch x := v.(type) {
	case *ast.StringNode:
		dur, err := ParseDuration(x.Value)
		if err != nil {
			d.bad(path, fmt.Sprintf("invalid duration %s: expected e.g. 2s or 1m30s", quote(x.Value)))
			return 0, false
		}
		return dur, true
	case *ast.IntegerNode, *ast.FloatNode:
		d.bad(path, fmt.Sprintf("expected a duration such as 2s or 1m30s, got %s: add a unit, e.g. %ss", describe(x), scalarText(x)))
	default:
		d.bad(path, fmt.Sprintf("expected a duration such as 2s or 1m30s, got %s", describe(v)))
	}
	return 0, false
}
