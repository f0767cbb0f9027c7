package cli

import (
	"bytes"
	"encoding/base64"
	"regexp"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/skiff-sh/skiff/internal/runtime/kubernetes"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestKubeInstallPrintsTheInstall(t *testing.T) {
	out, err := runCLI(t, "kube", "install", "--image", "registry.example/skiff:1", "--namespace", "club", "--edge-service", "NodePort",
		"--apps-storage-class", "local-path", "--insecure-registry", "registry.club.lan:5000")
	if err != nil {
		t.Fatal(err)
	}
	// The edge token is random: the rest must be what InstallObjects
	// renders with the token printed.
	m := regexp.MustCompile(`(?m)^  token: (\S+)$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("kube install printed no edge token:\n%s", out)
	}
	token, err := base64.StdEncoding.DecodeString(m[1])
	if err != nil || len(token) < 32 {
		t.Fatalf("edge token %q (%v): want a long random one", token, err)
	}
	objs, err := kubernetes.InstallObjects(kubernetes.InstallOptions{Image: "registry.example/skiff:1", Namespace: "club", EdgeService: "NodePort", EdgeToken: string(token),
		AppStorageClass: "local-path", InsecureRegistries: []string{"registry.club.lan:5000"}})
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := kubernetes.WriteYAML(&want, objs); err != nil {
		t.Fatal(err)
	}
	if out != want.String() {
		t.Fatalf("kube install printed:\n%s\nwant:\n%s", out, want.String())
	}
	var kinds []string
	for _, doc := range strings.Split(out, "\n---\n") {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatalf("document is not YAML: %v\n%s", err, doc)
		}
		clusterWide := obj.Kind == "Namespace" || strings.HasPrefix(obj.Kind, "Cluster")
		if !clusterWide && obj.Metadata.Namespace != "club" {
			t.Errorf("%s is in namespace %q, want club", obj.Kind, obj.Metadata.Namespace)
		}
		kinds = append(kinds, obj.Kind)
	}
	if got := strings.Join(kinds, ","); got != "Namespace,ServiceAccount,Role,RoleBinding,ClusterRole,ClusterRoleBinding,PersistentVolumeClaim,Secret,Deployment,ServiceAccount,Role,RoleBinding,Deployment,Service,Service" {
		t.Errorf("kinds %s", got)
	}
}

// TestKubeInstallRunsAServerItsFlagsParse parses the control plane's
// command line, as the install renders it, with skiff server's own flags.
func TestKubeInstallRunsAServerItsFlagsParse(t *testing.T) {
	objs, err := kubernetes.InstallObjects(kubernetes.InstallOptions{Image: "registry.example/skiff:1", EdgeToken: "t",
		AppStorageClass: "local-path", InsecureRegistries: []string{"registry.club.lan:5000", "10.0.0.5"}})
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, o := range objs {
		if o.GetKind() != "Deployment" || o.GetName() != "skiff" {
			continue
		}
		containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		for _, c := range containers {
			as, _, _ := unstructured.NestedStringSlice(c.(map[string]any), "args")
			args = as
		}
	}
	if len(args) == 0 || args[0] != "server" {
		t.Fatalf("control plane args %q, want skiff server's", args)
	}
	cmd := newServerCmd()
	if err := cmd.ParseFlags(args[1:]); err != nil {
		t.Fatalf("skiff server refuses the install's flags %q: %v", args, err)
	}
	f := cmd.Flags()
	if v, _ := f.GetString("storage-class"); v != "local-path" {
		t.Errorf("--storage-class = %q, want local-path", v)
	}
	if v, _ := f.GetStringSlice("insecure-registry"); strings.Join(v, ",") != "registry.club.lan:5000,10.0.0.5" {
		t.Errorf("--insecure-registry = %q", v)
	}
	if v, _ := f.GetString("runtime"); v != "kubernetes" {
		t.Errorf("--runtime = %q, want kubernetes", v)
	}
}

func TestKubeInstallNeedsAnImage(t *testing.T) {
	_, err := runCLI(t, "kube", "install")
	if err == nil || !strings.Contains(err.Error(), "--image is required") {
		t.Fatalf("kube install without --image: %v", err)
	}
}
