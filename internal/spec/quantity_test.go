package spec

import (
	"errors"
	"testing"
)

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"268435456", 268435456},
		{"1Ki", 1024},
		{"256Mi", 256 << 20},
		{"1Gi", 1 << 30},
		{"1.5Gi", 3 << 29},
		{"2Ti", 2 << 40},
		{"1Pi", 1 << 50},
		{"7Ei", 7 << 60},
		{"1k", 1000},
		{"512M", 512_000_000},
		{"1G", 1_000_000_000},
		{"1T", 1_000_000_000_000},
		{"1P", 1_000_000_000_000_000},
		{"1E", 1_000_000_000_000_000_000},
		{"1e9", 1_000_000_000},
		{"1E9", 1_000_000_000},
		{"1.5e3", 1500},
		{"12e+2", 1200},
		{"1e-3", 1}, // a fraction of a byte rounds up, as in Kubernetes
		{"0.5", 1},
		{".5Ki", 512},
		{"1.Ki", 1024},
		{"9223372036854775807", 9223372036854775807},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseQuantity(tt.in)
			if err != nil {
				t.Fatalf("ParseQuantity(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseQuantity(%q) = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseQuantityErrors(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"", `invalid quantity "": expected bytes or a number with a suffix such as 256Mi, 1Gi, 512M or 1e9`},
		{"-1Gi", `invalid quantity "-1Gi": expected bytes or a number with a suffix such as 256Mi, 1Gi, 512M or 1e9`},
		{"1 Gi", `invalid quantity "1 Gi": expected bytes or a number with a suffix such as 256Mi, 1Gi, 512M or 1e9`},
		{"1K", `invalid quantity "1K": expected bytes or a number with a suffix such as 256Mi, 1Gi, 512M or 1e9`},
		{"500m", `invalid quantity "500m": expected bytes or a number with a suffix such as 256Mi, 1Gi, 512M or 1e9`},
		{"1e9Mi", `invalid quantity "1e9Mi": expected bytes or a number with a suffix such as 256Mi, 1Gi, 512M or 1e9`},
		{"1e100", `invalid quantity "1e100": expected bytes or a number with a suffix such as 256Mi, 1Gi, 512M or 1e9`},
		{"256MB", `invalid quantity "256MB": did you mean 256Mi (powers of 1024) or 256M (powers of 1000)?`},
		{"1gb", `invalid quantity "1gb": did you mean 1Gi (powers of 1024) or 1G (powers of 1000)?`},
		{"64KiB", `invalid quantity "64KiB": did you mean 64Ki (powers of 1024) or 64k (powers of 1000)?`},
		{"8Ei", `invalid quantity "8Ei": more than 9223372036854775807 bytes`},
		{"9223372036854775808", `invalid quantity "9223372036854775808": more than 9223372036854775807 bytes`},
		{"1" + string(make([]byte, 70)), "invalid quantity: 71 characters is too long for a quantity such as 256Mi"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			_, err := ParseQuantity(tt.in)
			if err == nil {
				t.Fatalf("ParseQuantity(%q) succeeded", tt.in)
			}
			if !errors.Is(err, ErrInvalidQuantity) {
				t.Errorf("error does not wrap ErrInvalidQuantity: %v", err)
			}
			if err.Error() != tt.want {
				t.Errorf("ParseQuantity(%q) error = %q, want %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestMemoryBytes(t *testing.T) {
	tests := []struct {
		name string
		r    *Resources
		want int64
	}{
		{"no resources", nil, 0},
		{"no memory", &Resources{CPU: 1}, 0},
		{"quantity", &Resources{Memory: "1Gi"}, 1 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.MemoryBytes(); got != tt.want {
				t.Errorf("MemoryBytes() = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestParseCPU(t *testing.T) {
	tests := []struct {
		in      string
		want    float64
		wantErr bool
	}{
		{"500m", 0.5, false},
		{"1500m", 1.5, false},
		{"2", 2, false},
		{"0.25", 0.25, false},
		{".5", 0.5, false},
		{"1.5m", 0, true},
		{"-1", 0, true},
		{"1 core", 0, true},
		{"", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseCPU(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseCPU(%q) error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseCPU(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
