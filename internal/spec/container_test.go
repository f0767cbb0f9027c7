package spec

import (
	"reflect"
	"strings"
	"testing"
)

func TestContainerSpec(t *testing.T) {
	src := `name: web
image: ghcr.io/club/web:1.4
port: 8080
command: ./web --verbose
volumes:
  - {name: data, path: /var/lib/web}
  - name: cache
    path: /cache
    size: 10Gi
read_only: true
cap_drop: [ALL]
`
	s, err := Parse("skiff.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if !s.IsContainer() || s.Image != "ghcr.io/club/web:1.4" || s.Port != 8080 || !s.ReadOnly {
		t.Errorf("parsed %+v", s)
	}
	if want := []Volume{{Name: "data", Path: "/var/lib/web"}, {Name: "cache", Path: "/cache", Size: "10Gi"}}; !reflect.DeepEqual(s.Volumes, want) {
		t.Errorf("volumes = %+v, want %+v", s.Volumes, want)
	}
	if !reflect.DeepEqual(s.CapDrop, []string{"ALL"}) {
		t.Errorf("cap_drop = %v", s.CapDrop)
	}
	// A string command runs under /bin/sh -c in the container.
	if got := s.Command.Argv(); !reflect.DeepEqual(got, []string{"/bin/sh", "-c", "./web --verbose"}) {
		t.Errorf("argv = %q", got)
	}

	b, err := Parse("skiff.yaml", []byte("name: web\nbuild: ./app\ndockerfile: docker/Dockerfile.prod\nport: 80\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !b.IsContainer() || b.Build != "./app" || b.Dockerfile != "docker/Dockerfile.prod" || !b.Command.IsZero() {
		t.Errorf("parsed %+v", b)
	}
}

func TestContainerSpecErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string
	}{
		{"image and build", "name: a\nimage: nginx\nbuild: ./\nport: 80\n", []string{
			"skiff.yaml:3:1: build: cannot be combined with image",
		}},
		{"image without port", "name: a\nimage: nginx\n", []string{
			"skiff.yaml:1:1: port: required for a container app (image or build): a container needs a port to be routed",
		}},
		{"build without port", "name: a\nbuild: .\n", []string{"port: required for a container app"}},
		{"empty image", "name: a\nimage: \"\"\nport: 80\n", []string{"skiff.yaml:2:1: image: must not be empty"}},
		{"image with spaces", "name: a\nimage: \"nginx latest\"\nport: 80\n", []string{`image: "nginx latest" is not an image reference`}},
		{"absolute build", "name: a\nbuild: /srv/app\nport: 80\n", []string{`skiff.yaml:2:1: build: "/srv/app" must be relative to skiff.yaml`}},
		{"build outside", "name: a\nbuild: ../other\nport: 80\n", []string{`build: "../other" must stay inside the directory skiff.yaml is in`}},
		{"dockerfile without build", "name: a\nimage: nginx\nport: 80\ndockerfile: Dockerfile\n", []string{
			"skiff.yaml:4:1: dockerfile: needs build",
		}},
		{"dockerfile outside", "name: a\nbuild: .\nport: 80\ndockerfile: ../Dockerfile\n", []string{`dockerfile: "../Dockerfile" must stay inside`}},
		{"volumes on a process app", "name: a\ncommand: x\nvolumes: [{name: d, path: /d}]\n", []string{
			"skiff.yaml:3:1: volumes: needs image or build",
		}},
		{"read_only on a process app", "name: a\ncommand: x\nread_only: true\n", []string{"read_only: needs image or build"}},
		{"cap_drop on a process app", "name: a\ncommand: x\ncap_drop: [ALL]\n", []string{"cap_drop: needs image or build"}},
		{"bad volume name", "name: a\nimage: x\nport: 1\nvolumes: [{name: Data_1, path: /d}]\n", []string{
			`skiff.yaml:4:12: volumes[0].name: "Data_1" is not a valid volume name`,
		}},
		{"volume name twice", "name: a\nimage: x\nport: 1\nvolumes:\n  - {name: d, path: /a}\n  - {name: d, path: /b}\n", []string{
			`volumes[1].name: "d" is used twice (also at volumes[0])`,
		}},
		{"volume path twice", "name: a\nimage: x\nport: 1\nvolumes:\n  - {name: a, path: /d}\n  - {name: b, path: /d}\n", []string{
			`volumes[1].path: "/d" is used twice (also at volumes[0])`,
		}},
		{"relative volume path", "name: a\nimage: x\nport: 1\nvolumes: [{name: d, path: data}]\n", []string{`volumes[0].path: "data" must be an absolute path`}},
		{"root volume path", "name: a\nimage: x\nport: 1\nvolumes: [{name: d, path: /}]\n", []string{"volumes[0].path: cannot be /"}},
		{"unclean volume path", "name: a\nimage: x\nport: 1\nvolumes: [{name: d, path: /a/../b}]\n", []string{`volumes[0].path: "/a/../b" is not a plain absolute path: write it as /b`}},
		{"volume without fields", "name: a\nimage: x\nport: 1\nvolumes: [{}]\n", []string{
			"volumes[0].name: required", "volumes[0].path: required",
		}},
		{"unknown volume field", "name: a\nimage: x\nport: 1\nvolumes: [{name: d, path: /d, type: ssd}]\n", []string{`unknown field "type": expected one of name, path, size`}},
		{"volume size in GB", "name: a\nimage: x\nport: 1\nvolumes: [{name: d, path: /d, size: 10GB}]\n", []string{
			`skiff.yaml:4:31: volumes[0].size: invalid quantity "10GB": did you mean 10Gi (powers of 1024) or 10G (powers of 1000)?`,
		}},
		{"volume size too small", "name: a\nimage: x\nport: 1\nvolumes: [{name: d, path: /d, size: 64Ki}]\n", []string{
			`skiff.yaml:4:31: volumes[0].size: must be at least 1Mi, got "64Ki"`,
		}},
		{"volume size not a quantity", "name: a\nimage: x\nport: 1\nvolumes: [{name: d, path: /d, size: [1]}]\n", []string{
			`volumes[0].size: expected a quantity such as 256Mi or 1Gi`,
		}},
		{"empty volume size", "name: a\nimage: x\nport: 1\nvolumes: [{name: d, path: /d, size: \"\"}]\n", []string{
			`volumes[0].size: invalid quantity ""`,
		}},
		{"bad capability", "name: a\nimage: x\nport: 1\ncap_drop: [net_raw]\n", []string{`cap_drop[0]: "net_raw" is not a capability`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("skiff.yaml", []byte(tt.src))
			if err == nil {
				t.Fatal("Parse accepted it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not say %q", err, w)
				}
			}
		})
	}
}

// A volume's size is filled in by Defaults and read in bytes; a size
// given is kept as written.
func TestVolumeSize(t *testing.T) {
	s, err := Parse("skiff.yaml", []byte("name: db\nimage: x\nport: 1\nvolumes:\n  - {name: data, path: /data}\n  - {name: wal, path: /wal, size: 512M}\n  - {name: raw, path: /raw, size: 2147483648}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Volumes[0].Size != "" {
		t.Errorf("Parse filled in a size the spec left out: %q", s.Volumes[0].Size)
	}
	s.Defaults()
	for i, want := range []struct {
		size  Quantity
		bytes int64
	}{{DefaultVolumeSize, 1 << 30}, {"512M", 512e6}, {"2147483648", 2 << 30}} {
		if v := s.Volumes[i]; v.Size != want.size || v.SizeBytes() != want.bytes {
			t.Errorf("volumes[%d] after Defaults: size %q (%d bytes), want %q (%d bytes)", i, v.Size, v.SizeBytes(), want.size, want.bytes)
		}
	}
	if err := s.Validate(); err != nil {
		t.Errorf("defaults do not validate: %v", err)
	}
	if n := (Volume{Name: "x", Path: "/x"}).SizeBytes(); n != 1<<30 {
		t.Errorf("a volume without a size has %d bytes, want the default 1Gi", n)
	}
}
