package spec

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"strconv"
	"strings"
	"sync"

	"github.com/invopop/jsonschema"
)

// specSources are the files declaring the spec's structs. Their field doc
// comments become the schema's descriptions, so that the two cannot drift
// apart; the sources are embedded because a built binary has no source
// tree to read them from. Command, Duration, Percent and Quantity describe
// themselves in their JSONSchema methods.
//
//go:embed spec.go deploy.go http.go
var specSources embed.FS

// Schema is the JSON Schema (draft 2020-12) of skiff.yaml, generated from
// the Go types, for editors to complete and check the file. It is stricter
// nowhere than Parse, and looser only where JSON Schema cannot say a rule
// (duration ranges, memory written with a suffix). Each call returns a
// fresh copy.
func Schema() ([]byte, error) {
	s, err := schemaOnce()
	if err != nil {
		return nil, err
	}
	return bytes.Clone(s), nil
}

// schemaOnce generates the schema the first time it is asked for; it
// never changes while the program runs.
var schemaOnce = sync.OnceValues(func() ([]byte, error) {
	docs, err := fieldDocs()
	if err != nil {
		return nil, fmt.Errorf("schema: read field docs: %w", err)
	}
	r := &jsonschema.Reflector{
		Anonymous:      true,
		ExpandedStruct: true,
		CommentMap:     docs,
	}
	s := r.Reflect(&Spec{})
	s.Title = "skiff.yaml"
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("schema: encode: %w", err)
	}
	return append(out, '\n'), nil
})

// fieldDocs maps "<package>.<Type>" and "<package>.<Type>.<Field>" to the
// doc comment of each type and field in specSources, the keys
// invopop/jsonschema looks descriptions up by.
func fieldDocs() (map[string]string, error) {
	docs := map[string]string{}
	files, err := specSources.ReadDir(".")
	if err != nil {
		return nil, err
	}
	for _, file := range files {
		src, err := specSources.ReadFile(file.Name())
		if err != nil {
			return nil, err
		}
		f, err := parser.ParseFile(token.NewFileSet(), file.Name(), src, parser.ParseComments)
		if err != nil {
			return nil, err
		}
		addDocs(docs, f)
	}
	return docs, nil
}

// addDocs adds the doc comments of f's exported types and their fields.
func addDocs(docs map[string]string, f *ast.File) {
	pkg := reflect.TypeFor[Spec]().PkgPath()
	for _, decl := range f.Decls {
		gen, ok := decl.(*ast.GenDecl)
		if !ok || gen.Tok != token.TYPE {
			continue
		}
		for _, spec := range gen.Specs {
			ts := spec.(*ast.TypeSpec)
			if !ts.Name.IsExported() {
				continue
			}
			doc := ts.Doc
			if doc == nil && len(gen.Specs) == 1 {
				doc = gen.Doc
			}
			docs[pkg+"."+ts.Name.Name] = oneLine(doc.Text())
			st, ok := ts.Type.(*ast.StructType)
			if !ok {
				continue
			}
			for _, field := range st.Fields.List {
				for _, name := range field.Names {
					if name.IsExported() {
						docs[pkg+"."+ts.Name.Name+"."+name.Name] = oneLine(field.Doc.Text())
					}
				}
			}
		}
	}
}

// oneLine joins a doc comment's lines into one paragraph, as editors show
// descriptions in a narrow box and wrap them themselves.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// JSONSchemaExtend adds what reflection cannot see: required fields,
// patterns and ranges shared with validation, and the fields not supported
// yet, which the schema rejects as Parse does.
func (Spec) JSONSchemaExtend(s *jsonschema.Schema) {
	// A process app needs a command; a container app (image or build)
	// needs a port instead, and has one of them only.
	s.Required = []string{"name"}
	s.AnyOf = []*jsonschema.Schema{
		{Required: []string{"command"}},
		{Required: []string{"image", "port"}},
		{Required: []string{"build", "port"}},
	}
	s.Not = &jsonschema.Schema{Required: []string{"image", "build"}}
	prop := func(name string) *jsonschema.Schema {
		p, _ := s.Properties.Get(name)
		return p
	}
	name := prop("name")
	name.Pattern = namePattern.String()
	name.MaxLength = uint64Ptr(MaxNameLen)
	name.Examples = []any{"hello"}

	port := prop("port")
	port.Minimum, port.Maximum = "0", "65535"

	env := prop("env")
	env.PropertyNames = &jsonschema.Schema{
		Pattern: envKeyPattern.String(),
		Not: &jsonschema.Schema{AnyOf: []*jsonschema.Schema{
			{Const: "PORT"},
			{Pattern: "^SKIFF_"},
		}},
	}

	replicas := prop("replicas")
	replicas.Minimum, replicas.Maximum = "0", json.Number(strconv.Itoa(MaxReplicas))
	replicas.Default = DefaultReplicas

	hosts := prop("hosts")
	hosts.UniqueItems = true
	hosts.Items.Pattern = `^(\*\.)?[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$`
	hosts.Items.MaxLength = uint64Ptr(253)

	for _, f := range unsupportedFields {
		p := prop(f)
		*p = jsonschema.Schema{
			Description: p.Description,
			Not:         &jsonschema.Schema{},
		}
	}
}

// durationDefaults are the defaults of Health's durations as the schema
// shows them; a test checks them against the Default constants.
var durationDefaults = map[string]string{
	"interval":      "2s",
	"timeout":       "1s",
	"ready_timeout": "60s",
}

// JSONSchemaExtend adds the ranges and defaults of the probe settings, and
// forbids path together with tcp: true.
func (Health) JSONSchemaExtend(s *jsonschema.Schema) {
	prop := func(name string) *jsonschema.Schema {
		p, _ := s.Properties.Get(name)
		return p
	}
	prop("path").Pattern = `^/[^\s]*$`
	for name, def := range durationDefaults {
		prop(name).Default = def
	}
	threshold := prop("threshold")
	threshold.Minimum, threshold.Maximum = "1", json.Number(strconv.Itoa(MaxThreshold))
	threshold.Default = DefaultThreshold
	liveness := prop("liveness_threshold")
	liveness.Minimum, liveness.Maximum = "0", json.Number(strconv.Itoa(MaxThreshold))
	liveness.Default = DefaultLivenessThreshold
	tcpOn := jsonschema.NewProperties()
	tcpOn.Set("tcp", &jsonschema.Schema{Const: true})
	s.Not = &jsonschema.Schema{Required: []string{"path", "tcp"}, Properties: tcpOn}
}

// JSONSchemaExtend lets cpu be a number of cores or a string of cores or
// millicores, as Parse does.
func (Resources) JSONSchemaExtend(s *jsonschema.Schema) {
	cpu, _ := s.Properties.Get("cpu")
	*cpu = jsonschema.Schema{
		Description: cpu.Description,
		OneOf: []*jsonschema.Schema{
			{Type: "number", ExclusiveMinimum: "0", Maximum: json.Number(strconv.Itoa(MaxCPU))},
			{Type: "string", Pattern: cpuPattern.String()},
		},
		Examples: []any{0.5, "500m"},
	}
}

func uint64Ptr(n uint64) *uint64 {
	return &n
}
