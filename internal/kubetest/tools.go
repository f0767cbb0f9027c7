package kubetest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// stageFiles are kwok's stages the cluster runs with: nodes become Ready
// at once and keep their leases, pods become Running and Ready at once
// and go when deleted.
var stageFiles = []string{
	"node-initialize.yaml",
	"node-heartbeat-with-lease.yaml",
	"pod-ready.yaml",
	"pod-complete.yaml",
	"pod-delete.yaml",
}

// Tools are the paths of what a cluster runs.
type Tools struct {
	Etcd, APIServer, ControllerManager, Scheduler, Kwok string
	// Stages are kwok's stage files.
	Stages []string
}

// cacheDir is where scripts/kube-tools.sh installs: $SKIFF_TOOLS, else
// ~/.cache/skiff-tools.
func cacheDir() string {
	if d := os.Getenv("SKIFF_TOOLS"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".cache", "skiff-tools")
}

// FindTools locates the control plane, etcd, kwok and kwok's stages in
// the tools cache or on PATH. The error names everything missing and how
// to install it.
func FindTools() (Tools, error) {
	cache := cacheDir()
	var missing []string
	find := func(name string) string {
		p := filepath.Join(cache, "bin", name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p
		}
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		missing = append(missing, name)
		return ""
	}
	t := Tools{
		Etcd:              find("etcd"),
		APIServer:         find("kube-apiserver"),
		ControllerManager: find("kube-controller-manager"),
		Scheduler:         find("kube-scheduler"),
		Kwok:              find("kwok"),
	}
	for _, f := range stageFiles {
		p := filepath.Join(cache, "kwok-stages", f)
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, "kwok stage "+p)
			continue
		}
		t.Stages = append(t.Stages, p)
	}
	if len(missing) > 0 {
		return Tools{}, fmt.Errorf("%w: %s (scripts/kube-tools.sh installs them into %s)",
			ErrToolsMissing, strings.Join(missing, ", "), cache)
	}
	return t, nil
}

// ErrToolsMissing means a cluster cannot start here: a binary or stage
// file is not installed.
var ErrToolsMissing = errors.New("a Kubernetes test cluster needs what is not installed")
