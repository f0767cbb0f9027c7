package kubernetes

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsac "k8s.io/client-go/applyconfigurations/apps/v1"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	metaac "k8s.io/client-go/applyconfigurations/meta/v1"
	rbacac "k8s.io/client-go/applyconfigurations/rbac/v1"
)

// Names of the edge's part of the install.
const (
	edgeTokenSecret = "skiff-edge-token"
	edgeTokenKey    = "token"
	edgeTokenDir    = "/etc/skiff/edge-token"
	edgeReplicas    = 2
)

// newEdgeToken makes the token the control plane accepts from its edges.
func newEdgeToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("make the edge token: %w", err)
	}
	return hex.EncodeToString(b), nil
}

// edgeMetricsPort is where an edge pod serves /metrics and /readyz.
const edgeMetricsPort = 9090

// edgePodLabels select the edge's pods.
var edgePodLabels = map[string]string{LabelName: installName, componentKey: "edge"}

// edgeTokenObject is the Secret holding the edge token: the edges send
// it, the control plane reads it as --edge-token-file. It reaches only
// the route feed. Apply keeps the value of an existing one, so an
// install applied again does not cut off running edges.
func edgeTokenObject(o InstallOptions, labels map[string]string) *coreac.SecretApplyConfiguration {
	return coreac.Secret(edgeTokenSecret, o.Namespace).WithLabels(labels).
		WithType(corev1.SecretTypeOpaque).
		WithData(map[string][]byte{edgeTokenKey: []byte(o.EdgeToken)})
}

// edgeObjects render the edge on its own: a service account whose Role
// allows reading EndpointSlices in the namespace and nothing else, and a
// Deployment of edgeReplicas `skiff edge` pods that follow the control
// plane's routes through the API Service and the releases' pods through
// the slices, so they keep serving while the control plane restarts.
func edgeObjects(o InstallOptions, labels map[string]string) []any {
	ns := o.Namespace
	// Ready once it serves routes from the control plane: a new edge pod
	// gets no traffic while it has none to serve it with.
	probe := coreac.Probe().WithHTTPGet(coreac.HTTPGetAction().WithPath("/readyz").WithPort(intstr.FromString("metrics"))).
		WithPeriodSeconds(2).WithFailureThreshold(3)
	return []any{
		coreac.ServiceAccount(edgeService, ns).WithLabels(labels),
		rbacac.Role(edgeService, ns).WithLabels(labels).WithRules(
			rbacac.PolicyRule().WithAPIGroups("discovery.k8s.io").WithResources("endpointslices").
				WithVerbs("get", "list", "watch"),
		),
		rbacac.RoleBinding(edgeService, ns).WithLabels(labels).
			WithRoleRef(rbacac.RoleRef().WithAPIGroup(rbacv1.GroupName).WithKind("Role").WithName(edgeService)).
			WithSubjects(rbacac.Subject().WithKind(rbacv1.ServiceAccountKind).WithName(edgeService).WithNamespace(ns)),
		appsac.Deployment(edgeService, ns).WithLabels(labels).WithSpec(appsac.DeploymentSpec().
			WithReplicas(edgeReplicas).
			WithSelector(metaac.LabelSelector().WithMatchLabels(edgePodLabels)).
			WithTemplate(coreac.PodTemplateSpec().WithLabels(edgePodLabels).WithSpec(coreac.PodSpec().
				WithServiceAccountName(edgeService).
				WithContainers(coreac.Container().
					WithName("edge").
					WithImage(o.Image).
					WithArgs("edge", "--server", fmt.Sprintf("http://%s:%d", apiService, apiPort),
						"--kube-namespace", ns, "--http-addr", fmt.Sprintf(":%d", edgePort),
						"--metrics-addr", fmt.Sprintf(":%d", edgeMetricsPort)).
					WithEnv(coreac.EnvVar().WithName("SKIFF_TOKEN").WithValueFrom(coreac.EnvVarSource().
						WithSecretKeyRef(coreac.SecretKeySelector().WithName(edgeTokenSecret).WithKey(edgeTokenKey)))).
					WithPorts(coreac.ContainerPort().WithName("edge").WithContainerPort(edgePort),
						coreac.ContainerPort().WithName("metrics").WithContainerPort(edgeMetricsPort)).
					WithReadinessProbe(probe))))),
	}
}
