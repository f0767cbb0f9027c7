package kubernetes

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/skiff-sh/skiff/internal/instance"
)

var update = flag.Bool("update", false, "rewrite testdata/*.yaml from the rendering functions")

// renderCases are templates whose rendering is pinned in testdata.
var renderCases = []struct {
	name string
	t    instance.Template
}{
	{"minimal", instance.Template{
		App: "hello", Release: 1, Image: "ghcr.io/club/hello@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", Port: 8080,
	}},
	{"full", instance.Template{
		App: "shop", Release: 12, Image: "ghcr.io/club/shop:1.4", Port: 8080,
		Command: []string{"/bin/sh", "-c", "exec ./shop --flag"},
		Env:     map[string]string{"LOG_LEVEL": "info", "B_FIRST": "x", "PORT": "1", "SKIFF_INSTANCE": "forged"},
		Health: instance.Health{
			Path: "/healthz", Interval: 500 * time.Millisecond, Timeout: 250 * time.Millisecond,
			Threshold: 2, LivenessThreshold: 4, ReadyTimeout: 30 * time.Second,
		},
		Resources: instance.Resources{CPU: 0.5, MemoryBytes: 256 << 20},
		Ports:     []int{25565},
		ReadOnly:  true,
		CapDrop:   []string{"ALL"},
	}},
	{"tcp-no-liveness", instance.Template{
		App: "game", Release: 3, Image: "ghcr.io/club/game:7", Port: 25565,
		Health: instance.Health{TCP: true, Interval: 5 * time.Second, LivenessThreshold: -1},
	}},
	{"volumes", instance.Template{
		App: "db", Release: 4, Image: "ghcr.io/club/db:16", Port: 5432,
		Volumes: []instance.Volume{{Name: "data", Path: "/var/lib/db", SizeBytes: 10 << 30}, {Name: "wal", Path: "/wal"}},
	}},
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := ReplicaSet(tc.t, RenderOptions{Namespace: "skiff"})
			if err != nil {
				t.Fatal(err)
			}
			rsYAML, err := yaml.Marshal(rs)
			if err != nil {
				t.Fatal(err)
			}
			pdbYAML, err := yaml.Marshal(PodDisruptionBudget(tc.t.App, "skiff"))
			if err != nil {
				t.Fatal(err)
			}
			svc, err := Service(tc.t, RenderOptions{Namespace: "skiff"})
			if err != nil {
				t.Fatal(err)
			}
			svcYAML, err := yaml.Marshal(svc)
			if err != nil {
				t.Fatal(err)
			}
			got := string(rsYAML) + "---\n" + string(pdbYAML) + "---\n" + string(svcYAML)
			for _, v := range tc.t.Volumes {
				claimYAML, err := yaml.Marshal(Claim(tc.t.App, v, "skiff", ""))
				if err != nil {
					t.Fatal(err)
				}
				got += "---\n" + string(claimYAML)
			}
			path := filepath.Join("testdata", tc.name+".yaml")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("rendering of %s differs from %s (go test -update rewrites it after review):\n%s", tc.name, path, lineDiff(string(want), got))
			}
		})
	}
}

// The hash changes with the template and only with it.
func TestTemplateHashFollowsTemplate(t *testing.T) {
	base := renderCases[0].t
	hash := func(tmpl instance.Template) string {
		rs, err := ReplicaSet(tmpl, RenderOptions{Namespace: "skiff"})
		if err != nil {
			t.Fatal(err)
		}
		return rs.Annotations[AnnotationTemplateHash]
	}
	h := hash(base)
	if h == "" || hash(base) != h {
		t.Fatalf("hash %q is empty or unstable", h)
	}
	changed := base
	changed.Env = map[string]string{"A": "1"}
	if hash(changed) == h {
		t.Error("a new env did not change the template hash")
	}
}

func TestRenderRefusesWhatCannotRun(t *testing.T) {
	ok := renderCases[0].t
	for _, tc := range []struct {
		name string
		edit func(*instance.Template)
		is   error
		says string
	}{
		{"command only", func(t *instance.Template) { t.Image = ""; t.Command = []string{"./hello"} }, ErrCommandOnly, "give it an image"},
		{"local image id", func(t *instance.Template) { t.Image = "sha256:abc" }, ErrUnsupported, "push it to a registry"},
		{"bad volume name", func(t *instance.Template) { t.Volumes = []instance.Volume{{Name: "Data", Path: "/data"}} }, nil, `volume "Data"`},
		{"volume named twice", func(t *instance.Template) {
			t.Volumes = []instance.Volume{{Name: "data", Path: "/a"}, {Name: "data", Path: "/b"}}
		}, nil, "named twice"},
		{"relative volume path", func(t *instance.Template) { t.Volumes = []instance.Volume{{Name: "data", Path: "data"}} }, nil, `mount path "data"`},
		{"no port", func(t *instance.Template) { t.Port = 0 }, nil, "needs port:"},
		{"bad tcp target", func(t *instance.Template) { t.Ports = []int{70000} }, nil, "tcp target port 70000"},
		{"no release", func(t *instance.Template) { t.Release = 0 }, nil, "release above 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmpl := ok
			tc.edit(&tmpl)
			_, err := ReplicaSet(tmpl, RenderOptions{Namespace: "skiff"})
			if err == nil {
				t.Fatal("rendered; want an error")
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v is not %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.says) {
				t.Errorf("error %q does not say %q", err, tc.says)
			}
		})
	}
	if _, err := ReplicaSet(ok, RenderOptions{}); err == nil {
		t.Error("rendered without a namespace")
	}
}

// lineDiff shows the first lines where want and got differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for i := 0; i < max(len(w), len(g)) && len(out) < 20; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			out = append(out, "line "+strconv.Itoa(i+1)+":\n  want: "+wl+"\n  got:  "+gl)
		}
	}
	return strings.Join(out, "\n")
}
