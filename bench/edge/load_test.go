package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseCell(t *testing.T) {
	tests := []struct {
		in, path, label string
		h2, bad         bool
	}{
		{in: "h1-1k", path: "/1k", label: "HTTP/1.1, 1 KiB"},
		{in: "h2-1m", path: "/1m", label: "HTTP/2 (TLS), 1 MiB", h2: true},
		{in: "h3-1k", bad: true},
		{in: "h1-2k", bad: true},
		{in: "h1", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			c, err := parseCell(tc.in)
			if tc.bad {
				if err == nil {
					t.Fatalf("parseCell(%q) = %+v, want an error", tc.in, c)
				}
				return
			}
			if err != nil || c.path != tc.path || c.label != tc.label || c.h2 != tc.h2 {
				t.Fatalf("parseCell(%q) = %+v, %v", tc.in, c, err)
			}
		})
	}
}

func TestStatistics(t *testing.T) {
	tests := []struct {
		name string
		got  float64
		want float64
	}{
		{"median of odd count", median([]float64{5, 1, 3}), 3},
		{"median of even count", median([]float64{4, 1, 3, 2}), 2.5},
		{"median of none", median(nil), 0},
		{"p50 nearest rank", percentile([]float64{1, 2, 3, 4}, 50), 2},
		{"p99 of 100", percentile(seq(100), 99), 99},
		{"p99.9 of 1000", percentile(seq(1000), 99.9), 999},
		{"p99 of one", percentile([]float64{7}, 99), 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Fatalf("got %v, want %v", tc.got, tc.want)
			}
		})
	}
}

func seq(n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = float64(i + 1)
	}
	return s
}

// TestWrkLine checks the parser against the line conf/wrk.lua prints.
func TestWrkLine(t *testing.T) {
	out := "Running 5s test @ http://127.0.0.1:1/1k\nBENCH requests=120000 duration_us=5000000 errors=3 p50_us=900 p99_us=4100 p999_us=9000\n"
	m := wrkLine.FindStringSubmatch(out)
	if m == nil || m[1] != "120000" || m[3] != "3" || m[6] != "9000" {
		t.Fatalf("wrk line not parsed: %q", m)
	}
	lua, err := os.ReadFile("conf/wrk.lua")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(lua), "BENCH requests=%d duration_us=%d errors=%d p50_us=%d p99_us=%d p999_us=%d") {
		t.Fatal("conf/wrk.lua no longer prints the line the runner parses")
	}
}

func TestReadH2Log(t *testing.T) {
	path := filepath.Join(t.TempDir(), "h2.log")
	os.WriteFile(path, []byte("1700000000000000\t200\t300\n1700000000000100\t200\t100\nbad line\n1700000000000200\t200\t200\n"), 0o644)
	lat, err := readH2Log(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(lat) != 3 || lat[0] != 100 || lat[2] != 300 {
		t.Fatalf("latencies = %v, want [100 200 300]", lat)
	}
}

// TestRatiosPairRounds checks that a ratio is taken within one round.
func TestRatiosPairRounds(t *testing.T) {
	r := &results{samples: map[string]map[string][]sample{"h1-1k": {
		"skiff": {{requests: 200, seconds: 1}, {requests: 100, seconds: 1}},
		"nginx": {{requests: 100, seconds: 1}, {requests: 100, seconds: 1}},
	}}}
	got := r.ratios("h1-1k", "skiff", "nginx")
	if len(got) != 2 || got[0] != 2 || got[1] != 1 {
		t.Fatalf("ratios = %v, want [2 1]", got)
	}
}
