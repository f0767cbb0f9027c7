package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/goccy/go-yaml"
	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// Bounds on what Parse reads. A real skiff.yaml is a few hundred bytes
// and nests three levels deep. The YAML parser's time and memory grow
// faster than linearly with the number of keys and with the nesting of
// [ ] and { } (80 KB of brackets cost it gigabytes), so these bounds are
// what keeps a hostile upload from costing the server.
const (
	MaxFileSize = 64 << 10
	maxNesting  = 64
)

// Parse decodes and validates one skiff.yaml. file is the name used in
// error messages. On any problem it returns *Errors holding every problem
// found in the file, in file order; a YAML syntax error stops parsing, so
// it is reported alone. The spec is returned as written: call Defaults to
// fill in what it left out.
func Parse(file string, data []byte) (*Spec, error) {
	d := &decoder{file: file, pos: map[string]position{}, failed: map[string]bool{}, suggested: map[string]bool{}}
	s := d.parse(data)
	if s != nil {
		s.file, s.pos = file, d.pos
		for _, err := range s.validate() {
			if d.shadows(err.Path) || (d.suggested[err.Path] && !s.given(err.Path)) {
				continue
			}
			d.errs = append(d.errs, err)
		}
	}
	if len(d.errs) > 0 {
		sortErrors(d.errs)
		return nil, &Errors{List: d.errs}
	}
	return s, nil
}

// ParseFile reads and parses the skiff.yaml at path, naming it path in
// errors. A file that cannot be read is reported as *Errors as well, with
// one error naming the file and the reason.
func ParseFile(path string) (*Spec, error) {
	sp, _, err := LoadFile(path)
	return sp, err
}

// LoadFile is ParseFile that also returns the file's bytes, for callers
// that send the spec on (a deploy uploads it as written).
func LoadFile(path string) (*Spec, []byte, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, nil, &Errors{List: []*Error{{File: path, Message: err.Error()}}}
	}
	sp, err := Parse(path, data)
	return sp, data, err
}

// readFile reads at most one byte more than MaxFileSize, so that Parse
// reports a huge file as too large without holding all of it.
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read the spec: %w", osReason(err))
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("cannot read the spec: %w", osReason(err))
	}
	return data, nil
}

// osReason drops the path an *fs.PathError repeats, since the Error
// already names the file.
func osReason(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// parse turns data into a Spec, collecting problems in d.errs. It returns
// nil when the file is not a YAML mapping at all, and a partly filled Spec
// otherwise, so that validation can still report the fields that decoded.
func (d *decoder) parse(data []byte) *Spec {
	if len(data) > MaxFileSize {
		d.fail(position{}, "", fmt.Sprintf("the file is too large (more than %d bytes): a skiff.yaml is a few lines describing one app", MaxFileSize))
		return nil
	}
	// Editors on Windows may save a byte order mark; it is not content.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	if !d.checkText(data) || !d.checkNesting(data) {
		return nil
	}
	file, err := parseYAML(data)
	if err != nil {
		d.syntaxError(data, err)
		return nil
	}
	type document struct {
		start *token.Token
		body  ast.Node
	}
	var docs []document
	for _, doc := range file.Docs {
		if doc == nil || doc.Body == nil {
			continue
		}
		// A %YAML directive comes out as a document of its own.
		if _, ok := doc.Body.(*ast.DirectiveNode); ok {
			continue
		}
		docs = append(docs, document{start: doc.Start, body: doc.Body})
	}
	if len(docs) == 0 {
		d.fail(position{}, "", "the file is empty: a skiff.yaml needs at least name: and command:")
		return nil
	}
	if len(docs) > 1 {
		at := nodePos(docs[1].body)
		if docs[1].start != nil && docs[1].start.Position != nil {
			at = position{docs[1].start.Position.Line, docs[1].start.Position.Column}
		}
		d.fail(at, "", "a second YAML document starts here: a skiff.yaml describes one app; put each app in a file of its own")
	}
	body, ok := d.value(docs[0].body, "")
	if !ok {
		return nil
	}
	if !isMapping(body) {
		d.fail(nodePos(body), "", fmt.Sprintf("expected a mapping of fields such as name: and command:, got %s", describe(body)))
		return nil
	}
	return d.spec(body)
}

// parseYAML runs the YAML parser. Duplicate keys are allowed here and
// reported by entries, together with every other problem. The parser is
// not ours and reads untrusted input, so a panic in it becomes an error
// rather than taking the server down.
func parseYAML(data []byte) (file *ast.File, err error) {
	defer func() {
		if r := recover(); r != nil {
			file, err = nil, fmt.Errorf("the YAML parser failed on this file (%v)", r)
		}
	}()
	return parser.ParseBytes(data, 0, parser.AllowDuplicateMapKey())
}

// checkText rejects what YAML forbids in a file before the parser sees it,
// so the user learns the exact line and column: bytes that are not UTF-8
// and control characters other than tab, newline and carriage return.
func (d *decoder) checkText(data []byte) bool {
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			d.fail(position{line, col}, "", "the file is not valid UTF-8 text: save it as UTF-8")
			return false
		case r == '\n':
			line, col = line+1, 0
		case r < 0x20 && r != '\t' && r != '\r', r == 0x7f:
			d.fail(position{line, col}, "", fmt.Sprintf("control character %U is not allowed in YAML: remove it", r))
			return false
		}
		i += size
		col++
	}
	return true
}

// checkNesting rejects flow collections nested deeper than maxNesting.
// It counts every bracket, even inside quotes and comments: telling those
// apart needs the lexer this check protects, and a scan that guessed wrong
// could be steered into letting deep nesting through. A real file never
// comes near the bound either way.
func (d *decoder) checkNesting(data []byte) bool {
	depth, line, col := 0, 1, 1
	for _, r := range string(data) {
		switch r {
		case '[', '{':
			depth++
			if depth > maxNesting {
				d.fail(position{line, col}, "", fmt.Sprintf("brackets nest more than %d deep: a skiff.yaml needs only a few levels", maxNesting))
				return false
			}
		case ']', '}':
			depth = max(depth-1, 0)
		case '\n':
			line, col = line+1, 0
		}
		col++
	}
	return true
}

// syntaxError reports the parser's error at the place it names.
func (d *decoder) syntaxError(data []byte, err error) {
	var yerr yaml.Error
	if !errors.As(err, &yerr) {
		d.fail(position{}, "", "invalid YAML: "+err.Error())
		return
	}
	at := position{}
	if tk := yerr.GetToken(); tk != nil && tk.Position != nil {
		at = position{tk.Position.Line, tk.Position.Column}
	}
	// The parser quotes the offending character as is; a tab shown raw
	// inside quotes looks like spaces.
	msg := "invalid YAML: " + strings.ReplaceAll(yerr.GetMessage(), "\t", `\t`)
	// Tabs are the most common cause and YAML forbids them for
	// indentation; say so plainly rather than leave the user to decode the
	// parser's words.
	if at.line > 0 && indentedWithTab(data, at.line) {
		msg += " (indent with spaces: YAML does not allow tabs for indentation)"
	}
	d.fail(at, "", msg)
}

// indentedWithTab reports whether the 1-based line of data has a tab in
// its leading whitespace.
func indentedWithTab(data []byte, line int) bool {
	lines := strings.Split(string(data), "\n")
	if line > len(lines) {
		return false
	}
	text := lines[line-1]
	indent := text[:len(text)-len(strings.TrimLeft(text, " \t"))]
	return strings.Contains(indent, "\t")
}
