package runtimetest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/skiff-sh/skiff/internal/controller"
	"github.com/skiff-sh/skiff/internal/supervisor"
)

// The supervisor is the set level of the process and Docker runtimes.
var _ controller.Runtime = (*supervisor.Supervisor)(nil)

func TestBuildTestAppIsUsableByEveryone(t *testing.T) {
	dir := BuildTestApp(t)
	for _, p := range []string{dir, filepath.Join(dir, "testapp")} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o005 != 0o005 {
			t.Errorf("%s has mode %s; instances running as nobody cannot use it", p, fi.Mode())
		}
	}
}
