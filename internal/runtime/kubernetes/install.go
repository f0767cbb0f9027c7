package kubernetes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsac "k8s.io/client-go/applyconfigurations/apps/v1"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	metaac "k8s.io/client-go/applyconfigurations/meta/v1"
	rbacac "k8s.io/client-go/applyconfigurations/rbac/v1"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"
)

// InstallOptions shape what runs skiff itself in a cluster.
type InstallOptions struct {
	// Namespace holds skiff and its apps. Default "skiff".
	Namespace string
	// Image is skiff's container image. Required.
	Image string
	// Domain is the base domain apps answer on. Default "localhost".
	Domain string
	// EdgeService is the type of the edge's Service: LoadBalancer
	// (default), NodePort or ClusterIP.
	EdgeService string
	// Storage is the size of the control plane's volume. Default 1Gi.
	Storage string
	// StorageClass of that volume; empty means the cluster's default.
	StorageClass string
	// AppStorageClass is the storage class of the apps' volumes (the
	// control plane's --storage-class); empty means the cluster's
	// default.
	AppStorageClass string
	// InsecureRegistries are registries (host or host:port) the control
	// plane may resolve image tags from over plain HTTP (its
	// --insecure-registry). Default none.
	InsecureRegistries []string
	// EdgeToken is the token the edges reach the control plane's route
	// feed with. Default: a new random one (Apply keeps an installed
	// one).
	EdgeToken string
}

// Names of what the install creates.
const (
	installName  = "skiff"
	dataClaim    = "skiff-data"
	edgeService  = "skiff-edge"
	apiService   = "skiff-api"
	dataDir      = "/var/lib/skiff"
	edgePort     = 8080
	apiPort      = 7070
	componentKey = "app.kubernetes.io/component"
)

func (o *InstallOptions) defaults() error {
	if o.Namespace == "" {
		o.Namespace = "skiff"
	}
	if o.Domain == "" {
		o.Domain = "localhost"
	}
	if o.EdgeService == "" {
		o.EdgeService = string(corev1.ServiceTypeLoadBalancer)
	}
	if o.Storage == "" {
		o.Storage = "1Gi"
	}
	switch corev1.ServiceType(o.EdgeService) {
	case corev1.ServiceTypeLoadBalancer, corev1.ServiceTypeNodePort, corev1.ServiceTypeClusterIP:
	default:
		return fmt.Errorf("--edge-service %q: expected LoadBalancer, NodePort or ClusterIP", o.EdgeService)
	}
	if _, err := resource.ParseQuantity(o.Storage); err != nil {
		return fmt.Errorf("--storage %q: expected a size such as 1Gi: %w", o.Storage, err)
	}
	if o.Image == "" {
		return errors.New("--image is required: the skiff container image the cluster pulls")
	}
	for _, h := range o.InsecureRegistries {
		if _, err := registryHost(h); err != nil {
			return fmt.Errorf("--insecure-registry %q: %w: give a registry as host or host:port, such as registry.club.lan:5000", h, err)
		}
	}
	if o.EdgeToken == "" {
		token, err := newEdgeToken()
		if err != nil {
			return err
		}
		o.EdgeToken = token
	}
	return nil
}

// serverArgs are the control plane's command line.
func serverArgs(o InstallOptions) []string {
	args := []string{"server", "--runtime", "kubernetes", "--namespace", o.Namespace,
		"--data-dir", dataDir, "--domain", o.Domain,
		"--http-addr", fmt.Sprintf(":%d", edgePort), "--api-addr", fmt.Sprintf(":%d", apiPort),
		"--edge-token-file", edgeTokenDir + "/" + edgeTokenKey}
	if o.AppStorageClass != "" {
		args = append(args, "--storage-class", o.AppStorageClass)
	}
	for _, h := range o.InsecureRegistries {
		args = append(args, "--insecure-registry", h)
	}
	return args
}

// InstallObjects renders, in the order they are applied, what runs skiff
// in a cluster: its namespace, a service account with a Role that allows
// exactly what the runtime does in that namespace and a ClusterRole that
// lets it read nodes, nothing more, the edge token's Secret, the control
// plane (one replica, Recreate, its store on a PersistentVolumeClaim),
// the edge as a Deployment of its own (edgeObjects), the edge's Service
// (selecting the edge's pods) and the API's.
func InstallObjects(o InstallOptions) ([]*unstructured.Unstructured, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	ns := o.Namespace
	labels := map[string]string{LabelManagedBy: ManagedBy, LabelName: installName}
	podLabels := map[string]string{LabelName: installName, componentKey: "control-plane"}

	claim := coreac.PersistentVolumeClaimSpec().
		WithAccessModes(corev1.ReadWriteOnce).
		WithResources(coreac.VolumeResourceRequirements().WithRequests(corev1.ResourceList{
			corev1.ResourceStorage: resource.MustParse(o.Storage),
		}))
	if o.StorageClass != "" {
		claim.WithStorageClassName(o.StorageClass)
	}
	probe := coreac.Probe().WithHTTPGet(coreac.HTTPGetAction().WithPath("/v1/health").WithPort(intstr.FromString("api"))).
		WithPeriodSeconds(5).WithFailureThreshold(3)

	objs := []any{
		coreac.Namespace(ns).WithLabels(labels),
		coreac.ServiceAccount(installName, ns).WithLabels(labels),
		rbacac.Role(installName, ns).WithLabels(labels).WithRules(
			rbacac.PolicyRule().WithAPIGroups("apps").WithResources("replicasets").
				WithVerbs("get", "list", "watch", "create", "update", "patch", "delete"),
			rbacac.PolicyRule().WithAPIGroups("apps").WithResources("replicasets/scale").
				WithVerbs("get", "update", "patch"),
			rbacac.PolicyRule().WithAPIGroups("").WithResources("pods").
				WithVerbs("get", "list", "watch", "patch", "delete", "deletecollection"),
			// The pods' logs, which skiff logs shows.
			rbacac.PolicyRule().WithAPIGroups("").WithResources("pods/log").WithVerbs("get"),
			rbacac.PolicyRule().WithAPIGroups("policy").WithResources("poddisruptionbudgets").
				WithVerbs("get", "create", "patch", "delete"),
			// The apps' volumes; list finds a destroyed app's claims.
			rbacac.PolicyRule().WithAPIGroups("").WithResources("persistentvolumeclaims").
				WithVerbs("get", "list", "create", "patch", "delete"),
			// Each release's headless Service, whose EndpointSlices the
			// edges follow.
			rbacac.PolicyRule().WithAPIGroups("").WithResources("services").
				WithVerbs("get", "list", "watch", "create", "patch", "delete"),
		),
		rbacac.RoleBinding(installName, ns).WithLabels(labels).
			WithRoleRef(rbacac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("Role").WithName(installName)).
			WithSubjects(rbacac.Subject().WithKind(rbacv1.ServiceAccountKind).WithName(installName).WithNamespace(ns)),
		// Nodes are cluster-scoped: reading them (to stop routing to pods
		// of a lost node at once) takes a ClusterRole, named after the
		// namespace so that installs in several namespaces stand apart.
		rbacac.ClusterRole(nodeReader(ns)).WithLabels(labels).WithRules(
			rbacac.PolicyRule().WithAPIGroups("").WithResources("nodes").WithVerbs(nodeVerbs...),
		),
		rbacac.ClusterRoleBinding(nodeReader(ns)).WithLabels(labels).
			WithRoleRef(rbacac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("ClusterRole").WithName(nodeReader(ns))).
			WithSubjects(rbacac.Subject().WithKind(rbacv1.ServiceAccountKind).WithName(installName).WithNamespace(ns)),
		coreac.PersistentVolumeClaim(dataClaim, ns).WithLabels(labels).WithSpec(claim),
		edgeTokenObject(o, labels),
		appsac.Deployment(installName, ns).WithLabels(labels).WithSpec(appsac.DeploymentSpec().
			WithReplicas(1).
			// One server owns the store at a time: the old pod goes
			// before the new one starts.
			WithStrategy(appsac.DeploymentStrategy().WithType("Recreate")).
			WithSelector(metaac.LabelSelector().WithMatchLabels(podLabels)).
			WithTemplate(coreac.PodTemplateSpec().WithLabels(podLabels).WithSpec(coreac.PodSpec().
				WithServiceAccountName(installName).
				WithContainers(coreac.Container().
					WithName("skiff").
					WithImage(o.Image).
					WithArgs(serverArgs(o)...).
					WithPorts(
						coreac.ContainerPort().WithName("edge").WithContainerPort(edgePort),
						coreac.ContainerPort().WithName("api").WithContainerPort(apiPort)).
					WithReadinessProbe(probe).
					WithVolumeMounts(coreac.VolumeMount().WithName("data").WithMountPath(dataDir),
						coreac.VolumeMount().WithName("edge-token").WithMountPath(edgeTokenDir).WithReadOnly(true))).
				WithVolumes(coreac.Volume().WithName("data").
					WithPersistentVolumeClaim(coreac.PersistentVolumeClaimVolumeSource().WithClaimName(dataClaim)),
					coreac.Volume().WithName("edge-token").
						WithSecret(coreac.SecretVolumeSource().WithSecretName(edgeTokenSecret)))))),
	}
	objs = append(objs, edgeObjects(o, labels)...)
	objs = append(objs,
		coreac.Service(edgeService, ns).WithLabels(labels).WithSpec(coreac.ServiceSpec().
			WithType(corev1.ServiceType(o.EdgeService)).
			WithSelector(edgePodLabels).
			WithPorts(coreac.ServicePort().WithName("http").WithPort(80).WithTargetPort(intstr.FromString("edge")))),
		coreac.Service(apiService, ns).WithLabels(labels).WithSpec(coreac.ServiceSpec().
			WithSelector(podLabels).
			WithPorts(coreac.ServicePort().WithName("api").WithPort(apiPort).WithTargetPort(intstr.FromString("api")))),
	)
	out := make([]*unstructured.Unstructured, 0, len(objs))
	for _, obj := range objs {
		b, err := json.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("render install: %w", err)
		}
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(b); err != nil {
			return nil, fmt.Errorf("render install: %w", err)
		}
		out = append(out, u)
	}
	return out, nil
}

// WriteYAML writes objects as one YAML stream, for kubectl apply -f or a
// review.
func WriteYAML(w io.Writer, objs []*unstructured.Unstructured) error {
	for i, obj := range objs {
		b, err := yaml.Marshal(obj.Object)
		if err != nil {
			return fmt.Errorf("render %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		if i > 0 {
			if _, err := io.WriteString(w, "---\n"); err != nil {
				return err
			}
		}
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
	return nil
}

// resources maps the kinds the install renders to their API resources.
var apiResources = map[string]schema.GroupVersionResource{
	"Namespace":             {Version: "v1", Resource: "namespaces"},
	"ServiceAccount":        {Version: "v1", Resource: "serviceaccounts"},
	"PersistentVolumeClaim": {Version: "v1", Resource: "persistentvolumeclaims"},
	"Service":               {Version: "v1", Resource: "services"},
	"Secret":                {Version: "v1", Resource: "secrets"},
	"Role":                  {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	"RoleBinding":           {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
	"ClusterRole":           {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"ClusterRoleBinding":    {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	"Deployment":            {Group: "apps", Version: "v1", Resource: "deployments"},
}

func resourceOf(dyn dynamic.Interface, obj *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvr, ok := apiResources[obj.GetKind()]
	if !ok {
		return nil, fmt.Errorf("no API resource known for kind %s", obj.GetKind())
	}
	if obj.GetNamespace() == "" {
		return dyn.Resource(gvr), nil
	}
	return dyn.Resource(gvr).Namespace(obj.GetNamespace()), nil
}

// Apply applies objects server-side as skiff's field manager, in order.
// Before it changes anything it checks that no object of the same name
// exists that skiff does not manage; a namespace that exists already is
// used as it is, and left to its owner.
func Apply(ctx context.Context, dyn dynamic.Interface, objs []*unstructured.Unstructured, report func(string)) error {
	skip := map[int]bool{}
	for i, obj := range objs {
		_, cur, err := existing(ctx, dyn, obj)
		if err != nil {
			return err
		}
		if cur != nil && cur.GetLabels()[LabelManagedBy] != ManagedBy {
			if obj.GetKind() == "Namespace" {
				skip[i] = true
				continue
			}
			return notOurs(cur, nil)
		}
	}
	for i, obj := range objs {
		if skip[i] {
			report(fmt.Sprintf("namespace %s exists and is not skiff's: using it as it is", obj.GetName()))
			continue
		}
		res, cur, err := existing(ctx, dyn, obj)
		if err != nil {
			return err
		}
		if obj.GetKind() == "Secret" && cur != nil {
			// A secret made at an earlier install (the edge token) keeps
			// its value: running edges go on reaching the control plane.
			obj = obj.DeepCopy()
			obj.Object["data"] = cur.Object["data"]
		}
		if _, err := res.Apply(ctx, obj.GetName(), obj, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
			return fmt.Errorf("apply %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		report(fmt.Sprintf("%s %s applied", kindName(obj.GetKind()), qualified(obj)))
	}
	return nil
}

// Delete deletes, in reverse order, each of objects that exists and is
// skiff's, and waits until they are gone. Deleting a namespace skiff
// created deletes the apps in it too.
func Delete(ctx context.Context, dyn dynamic.Interface, objs []*unstructured.Unstructured, report func(string)) error {
	fg := metav1.DeletePropagationForeground
	var pending []*unstructured.Unstructured
	for i := len(objs) - 1; i >= 0; i-- {
		obj := objs[i]
		res, cur, err := existing(ctx, dyn, obj)
		if err != nil {
			return err
		}
		if cur == nil {
			continue
		}
		if cur.GetLabels()[LabelManagedBy] != ManagedBy {
			report(fmt.Sprintf("%s %s is not skiff's: left alone", kindName(obj.GetKind()), qualified(obj)))
			continue
		}
		uid := cur.GetUID()
		err = res.Delete(ctx, obj.GetName(), metav1.DeleteOptions{PropagationPolicy: &fg, Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		report(fmt.Sprintf("%s %s deleted", kindName(obj.GetKind()), qualified(obj)))
		pending = append(pending, obj)
	}
	for _, obj := range pending {
		res, _ := resourceOf(dyn, obj)
		for {
			_, err := res.Get(ctx, obj.GetName(), metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for %s %s to go: %w", obj.GetKind(), obj.GetName(), ctx.Err())
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

// existing reads the live object of obj's name, nil when there is none.
func existing(ctx context.Context, dyn dynamic.Interface, obj *unstructured.Unstructured) (dynamic.ResourceInterface, *unstructured.Unstructured, error) {
	res, err := resourceOf(dyn, obj)
	if err != nil {
		return nil, nil, err
	}
	cur, err := res.Get(ctx, obj.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return res, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("read %s %s: %w", obj.GetKind(), obj.GetName(), err)
	}
	return res, cur, nil
}

// nodeReader names the ClusterRole, and its binding, that let the
// install in namespace ns read nodes.
func nodeReader(ns string) string { return "skiff-" + ns + "-nodes" }

func kindName(kind string) string { return strings.ToLower(kind) }

func qualified(obj *unstructured.Unstructured) string {
	if obj.GetNamespace() == "" {
		return obj.GetName()
	}
	return obj.GetNamespace() + "/" + obj.GetName()
}
