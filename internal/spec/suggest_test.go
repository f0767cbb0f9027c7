package spec

import "testing"

func TestSuggest(t *testing.T) {
	tests := []struct {
		key  string
		want string
	}{
		{"replica", "replicas"},
		{"Name", "name"},
		{"helth", "health"},
		{"comand", "command"},
		{"cmd", "command"},
		{"environment", "env"},
		{"imag", "image"},
		{"autoscal", ""}, // not among the candidates given here
		{"owner", ""},
		{"x", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			if got := suggest(tt.key, specFields); got != tt.want {
				t.Errorf("suggest(%q) = %q, want %q", tt.key, got, tt.want)
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"abc", "", 3},
		{"replica", "replicas", 1},
		{"kitten", "sitting", 3},
		{"héalth", "health", 1},
	}
	for _, tt := range tests {
		t.Run(tt.a+"/"+tt.b, func(t *testing.T) {
			if got := editDistance(tt.a, tt.b); got != tt.want {
				t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
			}
		})
	}
}
