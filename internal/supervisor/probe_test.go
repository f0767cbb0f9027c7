package supervisor

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
)

func TestProbeConfigDefaults(t *testing.T) {
	tests := []struct {
		name string
		h    instance.Health
		want probeConfig
	}{
		{"zero is TCP with defaults", instance.Health{}, probeConfig{interval: 2 * time.Second, timeout: time.Second, threshold: 3, liveness: 6}},
		{"http path", instance.Health{Path: "healthz", Interval: time.Second, Timeout: 2 * time.Second, Threshold: 1, LivenessThreshold: 2},
			probeConfig{path: "/healthz", interval: time.Second, timeout: 2 * time.Second, threshold: 1, liveness: 2}},
		{"tcp wins over a path", instance.Health{Path: "/x", TCP: true}, probeConfig{interval: 2 * time.Second, timeout: time.Second, threshold: 3, liveness: 6}},
		{"negative liveness never restarts", instance.Health{LivenessThreshold: -1}, probeConfig{interval: 2 * time.Second, timeout: time.Second, threshold: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := probeConfigOf(tt.h); got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/ok":
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/slow":
			time.Sleep(300 * time.Millisecond)
		default:
			http.Error(w, "no", http.StatusInternalServerError)
		}
	}))
	defer srv.Close()
	endpoint := strings.TrimPrefix(srv.URL, "http://")
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := closed.Addr().String()
	closed.Close()

	tests := []struct {
		name     string
		endpoint string
		path     string
		wantErr  string
	}{
		{"http 200 passes", endpoint, "/ok", ""},
		{"http 302 passes without following", endpoint, "/redirect", ""},
		{"http 500 fails", endpoint, "/bad", "500"},
		{"http timeout fails", endpoint, "/slow", "deadline"},
		{"tcp open passes", endpoint, "", ""},
		{"tcp closed fails", dead, "", "connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := check(context.Background(), tt.endpoint, probeConfig{path: tt.path, timeout: 100 * time.Millisecond})
			if tt.wantErr == "" && err != nil {
				t.Errorf("err = %v, want a pass", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("err = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}
