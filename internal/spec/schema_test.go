package spec

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

var update = flag.Bool("update", false, "rewrite testdata/schema.json from Schema()")

func TestSchemaGolden(t *testing.T) {
	got, err := Schema()
	if err != nil {
		t.Fatalf("Schema: %v", err)
	}
	golden := filepath.Join("testdata", "schema.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("read golden file (run go test -run TestSchemaGolden -update to create it): %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Schema() differs from %s; if the change is intended, run go test -run TestSchemaGolden -update\ngot:\n%s", golden, got)
	}
}

// compileSchema compiles Schema() with a real JSON Schema validator, which
// also proves it is a valid draft 2020-12 schema.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	data, err := Schema()
	if err != nil {
		t.Fatalf("Schema: %v", err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("Schema() is not JSON: %v", err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("skiff.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("skiff.schema.json")
	if err != nil {
		t.Fatalf("compile schema: %v", err)
	}
	return sch
}

// yamlInstance turns YAML into the JSON value an editor would check.
func yamlInstance(t *testing.T, src string) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal([]byte(src), &v); err != nil {
		t.Fatalf("test YAML does not parse: %v", err)
	}
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

func TestSchemaAcceptsGoodSpecs(t *testing.T) {
	sch := compileSchema(t)
	files, err := filepath.Glob(filepath.Join("testdata", "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata specs: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			src, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Parse(file, src); err != nil {
				t.Fatalf("Parse rejects a good spec: %v", err)
			}
			if err := sch.Validate(yamlInstance(t, string(src))); err != nil {
				t.Errorf("schema rejects a spec Parse accepts: %v", err)
			}
		})
	}
}

func TestSchemaRejectsBadSpecs(t *testing.T) {
	sch := compileSchema(t)
	tests := []struct {
		name string
		yaml string
	}{
		{"unknown field", "name: a\ncommand: x\nreplica: 2\n"},
		{"field not supported yet", "name: a\ncommand: x\nautoscale: {min: 1}\n"},
		{"unknown strategy", "name: a\ncommand: x\ndeploy: {strategy: yolo}\n"},
		{"canary weight of 100", "name: a\ncommand: x\ndeploy: {strategy: canary, steps: [{weight: 100}]}\n"},
		{"bad balance", "name: a\ncommand: x\nhttp: {balance: random}\n"},
		{"image and build", "name: a\nimage: nginx\nbuild: ./\nport: 80\n"},
		{"image without port", "name: a\nimage: nginx\n"},
		{"name missing", "command: x\n"},
		{"command missing", "name: a\n"},
		{"invalid name", "name: Hello_World\ncommand: x\n"},
		{"name too long", "name: " + strings.Repeat("a", 33) + "\ncommand: x\n"},
		{"port a string", "name: a\ncommand: x\nport: 80a\n"},
		{"port too large", "name: a\ncommand: x\nport: 70000\n"},
		{"command empty list", "name: a\ncommand: []\n"},
		{"command element a number", "name: a\ncommand: [sleep, 10]\n"},
		{"env value a number", "name: a\ncommand: x\nenv: {WORKERS: 4}\n"},
		{"env PORT", "name: a\ncommand: x\nenv: {PORT: \"80\"}\n"},
		{"env SKIFF_", "name: a\ncommand: x\nenv: {SKIFF_X: a}\n"},
		{"replicas negative", "name: a\ncommand: x\nreplicas: -1\n"},
		{"host twice", "name: a\ncommand: x\nhosts: [a.example.com, a.example.com]\n"},
		{"host uppercase", "name: a\ncommand: x\nhosts: [A.example.com]\n"},
		{"host with port", "name: a\ncommand: x\nhosts: [\"a.example.com:80\"]\n"},
		{"health path and tcp", "name: a\ncommand: x\nhealth: {path: /x, tcp: true}\n"},
		{"health path without slash", "name: a\ncommand: x\nhealth: {path: x}\n"},
		{"invalid duration", "name: a\ncommand: x\nhealth: {interval: 2x}\n"},
		{"duration without unit", "name: a\ncommand: x\nhealth: {interval: 2}\n"},
		{"threshold zero", "name: a\ncommand: x\nhealth: {threshold: 0}\n"},
		{"unknown health field", "name: a\ncommand: x\nhealth: {intervall: 2s}\n"},
		{"cpu zero", "name: a\ncommand: x\nresources: {cpu: 0}\n"},
		{"cpu not a quantity", "name: a\ncommand: x\nresources: {cpu: half}\n"},
		{"memory in MB", "name: a\ncommand: x\nresources: {memory: 256MB}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse("skiff.yaml", []byte(tt.yaml)); err == nil {
				t.Fatalf("Parse accepts the spec; the case does not test a bad spec")
			}
			if err := sch.Validate(yamlInstance(t, tt.yaml)); err == nil {
				t.Errorf("schema accepts a spec Parse rejects")
			}
		})
	}
}

// TestSchemaDescribesEveryField walks the schema's properties: an editor
// shows each description while the user types the field.
func TestSchemaDescribesEveryField(t *testing.T) {
	data, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	var root map[string]any
	if err := json.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	if root["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v, want draft 2020-12", root["$schema"])
	}
	objects := map[string]any{"spec": root}
	for name, def := range root["$defs"].(map[string]any) {
		objects[name] = def
	}
	n := 0
	for name, obj := range objects {
		props, ok := obj.(map[string]any)["properties"].(map[string]any)
		if !ok {
			continue
		}
		if obj.(map[string]any)["additionalProperties"] != false {
			t.Errorf("%s allows additional properties", name)
		}
		for prop, s := range props {
			n++
			if d, _ := s.(map[string]any)["description"].(string); d == "" {
				t.Errorf("%s.%s has no description", name, prop)
			}
		}
	}
	if want := len(specFields) + len(unsupportedFields) + len(healthFields) + len(resourcesFields) + len(tcpFields) + len(volumeFields) + len(deployFields) + len(stepFields) + len(analysisFields) + len(httpFields); n != want {
		t.Errorf("schema has %d properties, want %d", n, want)
	}
}

func TestSchemaDefaultsMatchConstants(t *testing.T) {
	want := map[string]Duration{
		"interval":      Duration(DefaultInterval),
		"timeout":       Duration(DefaultTimeout),
		"ready_timeout": Duration(DefaultReadyTimeout),
	}
	for name, text := range durationDefaults {
		d, err := ParseDuration(text)
		if err != nil || d != want[name] {
			t.Errorf("schema default of %s is %q, want %s", name, text, want[name])
		}
	}
	if len(durationDefaults) != len(want) {
		t.Errorf("schema has defaults for %d durations, want %d", len(durationDefaults), len(want))
	}
}
