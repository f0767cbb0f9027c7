package runtimetest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// ForgetSet drops a set from a stopped supervisor's sets.json, as a crash
// right after a recorded DeleteSet leaves it. It fails when the set is not
// there, so a change of the file's format cannot make it a silent no-op.
func ForgetSet(t *testing.T, dir, app string, release int) {
	t.Helper()
	path := filepath.Join(dir, "sets.json")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("forget set: %v", err)
	}
	var state map[string]any
	if err := json.Unmarshal(b, &state); err != nil {
		t.Fatalf("forget set: %v", err)
	}
	sets, _ := state["sets"].([]any)
	var kept []any
	for _, s := range sets {
		tmpl, _ := s.(map[string]any)["template"].(map[string]any)
		if tmpl["App"] == app && tmpl["Release"] == float64(release) {
			continue
		}
		kept = append(kept, s)
	}
	if len(kept) == len(sets) {
		t.Fatalf("forget set: %s release %d not in %s", app, release, b)
	}
	state["sets"] = kept
	if b, err = json.Marshal(state); err != nil {
		t.Fatalf("forget set: %v", err)
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatalf("forget set: %v", err)
	}
}
