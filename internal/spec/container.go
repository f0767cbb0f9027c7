package spec

import (
	"cmp"
	"path"
	"regexp"
	"strings"
	"unicode"

	"github.com/goccy/go-yaml/ast"
	"github.com/invopop/jsonschema"
)

// volumeFields are the fields of one volume, in the order the docs list
// them.
var volumeFields = []string{"name", "path", "size"}

// capPattern is a Linux capability name as Docker takes it: with or
// without CAP_, or ALL.
var capPattern = regexp.MustCompile(`^(ALL|(CAP_)?[A-Z][A-Z0-9_]*)$`)

// IsContainer tells whether the app runs as containers: it has an image or
// a build.
func (s *Spec) IsContainer() bool {
	return s.Image != "" || s.Build != ""
}

// volumes decodes the list of named volumes.
func (d *decoder) volumes(path string, n ast.Node) []Volume {
	elems, ok := d.list(path, n, "a list of volumes such as [{name: data, path: /var/lib/app}]")
	if !ok || len(elems) == 0 {
		return nil
	}
	vols := make([]Volume, len(elems))
	for i, el := range elems {
		p := index(path, i)
		entries, ok := d.mapping(p, el, "a mapping such as {name: data, path: /var/lib/app}")
		if !ok {
			continue
		}
		for _, e := range entries {
			switch e.key {
			case "name":
				vols[i].Name, _ = d.str(e.path, e.value)
			case "path":
				vols[i].Path, _ = d.str(e.path, e.value)
			case "size":
				vols[i].Size = d.memory(e.path, e.value)
			default:
				d.unknown(e, volumeFields)
			}
		}
	}
	return vols
}

// strings decodes a list of strings.
func (d *decoder) strings(path string, n ast.Node, what string) []string {
	elems, ok := d.list(path, n, what)
	if !ok || len(elems) == 0 {
		return nil
	}
	out := make([]string, len(elems))
	for i, el := range elems {
		out[i], _ = d.str(index(path, i), el)
	}
	return out
}

// container checks the fields of container apps and that they are used
// only by one.
func (v *validator) container() {
	s := v.s
	image := s.Image != "" || s.given("image")
	build := s.Build != "" || s.given("build")
	if image {
		switch {
		case strings.TrimSpace(s.Image) == "":
			v.errorf("image", "must not be empty: give an image such as nginx:1.27")
		case strings.ContainsFunc(s.Image, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }):
			v.errorf("image", "%s is not an image reference: it has spaces or control characters", quote(s.Image))
		}
	}
	if build {
		if msg := relativePath(s.Build); msg != "" {
			v.errorf("build", "%s %s, such as ./ or ./web", quote(s.Build), msg)
		}
	}
	if image && build {
		v.errorf("build", "cannot be combined with image: run an existing image (image) or build one from a directory (build), not both")
	}
	if s.Dockerfile != "" || s.given("dockerfile") {
		switch {
		case !build:
			v.errorf("dockerfile", "needs build: the Dockerfile is looked up in the build directory")
		default:
			if msg := relativePath(s.Dockerfile); msg != "" {
				v.errorf("dockerfile", "%s %s, such as Dockerfile or docker/web.Dockerfile", quote(s.Dockerfile), msg)
			}
		}
	}
	container := image || build
	if container && s.Port == 0 && !s.given("port") {
		v.missing("port", "required for a container app (image or build): a container needs a port to be routed; give the port the app listens on inside the container, e.g. port: 8080")
	}
	if !container {
		for _, f := range []string{"volumes", "read_only", "cap_drop"} {
			if s.given(f) {
				v.errorf(f, "needs image or build: only container apps have it")
			}
		}
		if !s.given("volumes") && s.Volumes != nil {
			v.errorf("volumes", "needs image or build: only container apps have it")
		}
		return
	}
	names, paths := map[string]int{}, map[string]int{}
	for i, vol := range s.Volumes {
		p := index("volumes", i)
		switch {
		case vol.Name == "":
			v.fieldMissing(p, "name", "required: give the volume a name such as data")
		case len(vol.Name) > 63 || !labelPattern.MatchString(vol.Name):
			v.errorf(join(p, "name"), "%s is not a valid volume name: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit", quote(vol.Name))
		default:
			if j, dup := names[vol.Name]; dup {
				v.errorf(join(p, "name"), "%s is used twice (also at %s): give each volume its own name", quote(vol.Name), index("volumes", j))
			} else {
				names[vol.Name] = i
			}
		}
		switch {
		case vol.Path == "":
			v.fieldMissing(p, "path", "required: give the absolute path to mount it at, such as /var/lib/app")
		case !strings.HasPrefix(vol.Path, "/"):
			v.errorf(join(p, "path"), "%s must be an absolute path, such as /var/lib/app", quote(vol.Path))
		case path.Clean(vol.Path) == "/":
			v.errorf(join(p, "path"), "cannot be / (the whole filesystem): mount it at a directory such as /data")
		case path.Clean(vol.Path) != vol.Path || strings.ContainsAny(vol.Path, ":\x00"):
			v.errorf(join(p, "path"), "%s is not a plain absolute path: write it as %s, without ':'", quote(vol.Path), path.Clean(vol.Path))
		default:
			if j, dup := paths[vol.Path]; dup {
				v.errorf(join(p, "path"), "%s is used twice (also at %s): mount each volume at its own path", quote(vol.Path), index("volumes", j))
			} else {
				paths[vol.Path] = i
			}
		}
		if vol.Size != "" || v.s.given(join(p, "size")) {
			n, err := vol.Size.Bytes()
			switch {
			case err != nil:
				v.errorf(join(p, "size"), "%v", err)
			case n < MinVolumeSize:
				v.errorf(join(p, "size"), "must be at least 1Mi, got %s: give the space the volume needs, such as 1Gi", quote(string(vol.Size)))
			}
		}
	}
	for i, c := range s.CapDrop {
		if !capPattern.MatchString(c) {
			v.errorf(index("cap_drop", i), "%s is not a capability: write it in capitals, such as NET_RAW, CAP_NET_RAW or ALL", quote(c))
		}
	}
}

// fieldMissing reports a required field of a list element, at the
// element.
func (v *validator) fieldMissing(elem, field, msg string) {
	e := v.s.ErrorAt(elem, msg)
	e.Path = join(elem, field)
	v.errs = append(v.errs, e)
}

// relativePath says what is wrong with a path that must stay inside the
// uploaded directory, or "".
func relativePath(p string) string {
	switch {
	case strings.TrimSpace(p) == "":
		return "must not be empty: give a directory relative to skiff.yaml"
	case strings.HasPrefix(p, "/"):
		return "must be relative to skiff.yaml, not absolute"
	case strings.ContainsRune(p, 0) || strings.ContainsRune(p, '\\'):
		return "must be a plain relative path with '/' separators"
	}
	if c := path.Clean(p); c == ".." || strings.HasPrefix(c, "../") {
		return "must stay inside the directory skiff.yaml is in (it is what is uploaded)"
	}
	return ""
}

// SizeBytes is the volume's size in bytes, DefaultVolumeSize's when none
// is set. It is meant for a validated spec: a size that does not parse
// counts as the default, which Validate would have reported.
func (v Volume) SizeBytes() int64 {
	n, err := cmp.Or(v.Size, DefaultVolumeSize).Bytes()
	if err != nil {
		n, _ = DefaultVolumeSize.Bytes()
	}
	return n
}

// JSONSchemaExtend gives volume names and paths the patterns validation
// uses.
func (Volume) JSONSchemaExtend(s *jsonschema.Schema) {
	name, _ := s.Properties.Get("name")
	name.Pattern = labelPattern.String()
	p, _ := s.Properties.Get("path")
	p.Pattern = "^/."
}
