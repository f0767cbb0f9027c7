package docker

import (
	"errors"
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/internal/instance"
)

// TestStartError: the engine reports a host port it could not bind only
// in words; those words become ErrPortInUse. Provoking it for real means
// holding a run of ten ports where the engine allocates next, in the
// ephemeral range every other test's containers share, so this checks
// the mapping on the engine's own messages instead.
func TestStartError(t *testing.T) {
	tm := instance.Template{App: "web", Release: 2, Port: 8080, Ports: []int{25565}}
	tests := []struct {
		name string
		err  string
		is   error
		want []string
	}{
		{"userland proxy bind", "Error response from daemon: driver failed programming external connectivity on endpoint x (ab8c): Error starting userland proxy: listen tcp4 127.0.0.1:32796: bind: address already in use",
			ErrPortInUse, []string{"port already in use", "could not publish port 8080, 25565 of release 2 of web on 127.0.0.1", "127.0.0.1:32796", "tries again"}},
		{"allocator", "Bind for 127.0.0.1:32796 failed: port is already allocated", ErrPortInUse, []string{"port 8080, 25565"}},
		{"other", "Error response from daemon: OCI runtime create failed", nil, []string{"start container: Error response from daemon: OCI runtime create failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := startError(tm, errors.New(tt.err))
			if tt.is != nil && !errors.Is(err, tt.is) || tt.is == nil && errors.Is(err, ErrPortInUse) {
				t.Errorf("err = %v, want errors.Is %v", err, tt.is)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err %q does not say %q", err, w)
				}
			}
		})
	}
}
