package kubetest

import (
	"testing"
	"time"
)

// Await polls cond every 50ms until it returns nil, and fails t with
// what was awaited and cond's last error when timeout passes first. The
// cluster's state lives in the API server, so tests poll it rather than
// sleep.
func Await(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
