package kubernetes

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsac "k8s.io/client-go/applyconfigurations/apps/v1"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	metaac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyac "k8s.io/client-go/applyconfigurations/policy/v1"

	"github.com/skiff-sh/skiff/internal/instance"
)

// Labels and annotations skiff puts on what it creates. Everything skiff
// owns carries LabelManagedBy=ManagedBy, and skiff never touches an object
// without it.
const (
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "skiff"
	LabelName      = "app.kubernetes.io/name"
	LabelApp       = "skiff.sh/app"
	LabelRelease   = "skiff.sh/release"

	// AnnotationTemplateHash records which rendering of the template a
	// ReplicaSet carries, so an unchanged one is not applied again.
	AnnotationTemplateHash = "skiff.sh/template-hash"
	// AnnotationDraining marks a pod chosen to leave (MarkDraining).
	AnnotationDraining = "skiff.sh/draining"
	// AnnotationDeletionCost is read by the ReplicaSet controller: on a
	// scale-down it deletes the pods of lowest cost first.
	AnnotationDeletionCost = "controller.kubernetes.io/pod-deletion-cost"

	// FieldManager owns the fields skiff applies.
	FieldManager = "skiff"
	// ContainerName is the name of the app's container in every pod.
	ContainerName = "app"
)

// drainingCost is the lowest deletion cost there is: a draining pod is
// the first its ReplicaSet deletes.
var drainingCost = strconv.Itoa(math.MinInt32)

// Defaults of a template's health, the same as the supervisor's.
const (
	defaultInterval     = 2 * time.Second
	defaultTimeout      = time.Second
	defaultThreshold    = 3
	defaultLiveness     = 6
	defaultReadyTimeout = 60 * time.Second
)

var (
	// ErrCommandOnly refuses a template without an image.
	ErrCommandOnly error = cannotRun("the kubernetes runtime runs image apps only")
	// ErrUnsupported refuses what a template asks and this runtime cannot
	// do yet.
	ErrUnsupported error = cannotRun("not supported by the kubernetes runtime")
)

// RenderOptions shape the objects rendered for a cluster.
type RenderOptions struct {
	// Namespace holds every object. Required.
	Namespace string
	// StopGrace is how long a pod has between SIGTERM and SIGKILL.
	// Default 10s, as the supervisor's.
	StopGrace time.Duration
	// StorageClass of new volume claims (skiff server --storage-class);
	// empty means the cluster's default class.
	StorageClass string
}

// SetName names a release's ReplicaSet: <app>-<release>. Releases are
// numbers, so the name is unique even when app names hold dashes and
// digits.
func SetName(app string, release int) string { return app + "-" + strconv.Itoa(release) }

// setLabels select one release's pods.
func setLabels(app string, release int) map[string]string {
	return map[string]string{LabelApp: app, LabelRelease: strconv.Itoa(release)}
}

// objectLabels go on everything skiff creates for an app.
func objectLabels(app string) map[string]string {
	return map[string]string{LabelManagedBy: ManagedBy, LabelName: app, LabelApp: app}
}

// cannotRun is an error of a template this runtime will never run; it is
// an instance.ErrCannotRun, so the controller fails the release at once.
type cannotRun string

func (e cannotRun) Error() string        { return string(e) }
func (e cannotRun) Is(target error) bool { return target == instance.ErrCannotRun }

// CheckTemplate says why t cannot run on Kubernetes, or nil.
func CheckTemplate(t instance.Template) error {
	switch {
	case t.App == "" || t.Release <= 0:
		return fmt.Errorf("template needs an app and a release above 0 (got %q, %d)", t.App, t.Release)
	case t.Image == "":
		return fmt.Errorf("app %s has a command but no image: %w; give it an image: (or build:) in skiff.yaml, or run it with skiff server --runtime local", t.App, ErrCommandOnly)
	case strings.HasPrefix(t.Image, "sha256:"):
		return fmt.Errorf("app %s: image %s is a local Docker image ID, which a cluster's nodes cannot pull: push it to a registry and name it in image: (ideally by digest, name@sha256:...): %w", t.App, t.Image, ErrUnsupported)
	case t.Port <= 0 || t.Port > 65535:
		return fmt.Errorf("app %s: port %d: an image app needs port: (1-65535) in skiff.yaml", t.App, t.Port)
	}
	if err := checkVolumes(t); err != nil {
		return err
	}
	for _, p := range t.Ports {
		if p <= 0 || p > 65535 {
			return fmt.Errorf("app %s: tcp target port %d is out of range 1-65535", t.App, p)
		}
	}
	return nil
}

// ReplicaSet renders the ReplicaSet of t's release, without a size: the
// size is the scale subresource's, so applying the template never undoes
// a scale. The template hash annotation covers everything rendered.
func ReplicaSet(t instance.Template, o RenderOptions) (*appsac.ReplicaSetApplyConfiguration, error) {
	if err := CheckTemplate(t); err != nil {
		return nil, err
	}
	if o.Namespace == "" {
		return nil, errors.New("render: a namespace is required")
	}
	sel := setLabels(t.App, t.Release)
	labels := objectLabels(t.App)
	maps.Copy(labels, sel)

	rs := appsac.ReplicaSet(SetName(t.App, t.Release), o.Namespace).
		WithLabels(labels).
		WithSpec(appsac.ReplicaSetSpec().
			WithSelector(metaac.LabelSelector().WithMatchLabels(sel)).
			WithTemplate(coreac.PodTemplateSpec().
				WithLabels(labels).
				WithSpec(podSpec(t, o, sel))))
	hash, err := templateHash(rs)
	if err != nil {
		return nil, err
	}
	rs.WithAnnotations(map[string]string{AnnotationTemplateHash: hash})
	return rs, nil
}

func templateHash(rs *appsac.ReplicaSetApplyConfiguration) (string, error) {
	b, err := json.Marshal(rs)
	if err != nil {
		return "", fmt.Errorf("render replicaset: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8]), nil
}

func podSpec(t instance.Template, o RenderOptions, sel map[string]string) *coreac.PodSpecApplyConfiguration {
	grace := o.StopGrace
	if grace == 0 {
		grace = 10 * time.Second
	}
	c := coreac.Container().
		WithName(ContainerName).
		WithImage(t.Image).
		WithImagePullPolicy(corev1.PullIfNotPresent).
		WithPorts(coreac.ContainerPort().WithName("app").WithContainerPort(int32(t.Port)).WithProtocol(corev1.ProtocolTCP)).
		WithEnv(env(t)...)
	for _, p := range t.Ports {
		c.WithPorts(coreac.ContainerPort().WithContainerPort(int32(p)).WithProtocol(corev1.ProtocolTCP))
	}
	if len(t.Command) > 0 {
		// A spec's command replaces the image's CMD and keeps its
		// ENTRYPOINT, as on Docker.
		c.WithArgs(t.Command...)
	}
	if r := resources(t.Resources); r != nil {
		c.WithResources(r)
	}
	readiness, liveness, startup := probes(t)
	c.WithReadinessProbe(readiness).WithStartupProbe(startup)
	if liveness != nil {
		c.WithLivenessProbe(liveness)
	}
	if t.ReadOnly || len(t.CapDrop) > 0 {
		sc := coreac.SecurityContext()
		if t.ReadOnly {
			sc.WithReadOnlyRootFilesystem(true)
		}
		if len(t.CapDrop) > 0 {
			caps := coreac.Capabilities()
			for _, name := range t.CapDrop {
				caps.WithDrop(corev1.Capability(name))
			}
			sc.WithCapabilities(caps)
		}
		c.WithSecurityContext(sc)
	}
	mountVolumes(t, c)
	p := coreac.PodSpec().
		WithContainers(c).
		// Apps do not talk to the Kubernetes API, nor need every
		// Service of the namespace in their environment.
		WithAutomountServiceAccountToken(false).
		WithEnableServiceLinks(false).
		WithTerminationGracePeriodSeconds(int64(grace.Seconds()))
	if len(t.Volumes) > 0 {
		return withClaims(t, p)
	}
	return p.WithTopologySpreadConstraints(coreac.TopologySpreadConstraint().
		WithMaxSkew(1).
		WithTopologyKey(corev1.LabelHostname).
		// Spread when possible, never leave a pod pending for it:
		// after a node is lost its pods must land somewhere.
		WithWhenUnsatisfiable(corev1.ScheduleAnyway).
		WithLabelSelector(metaac.LabelSelector().WithMatchLabels(sel)))
}

// env is the template's env plus what skiff sets, which the template
// cannot override; the instance id is the pod's name.
func env(t instance.Template) []*coreac.EnvVarApplyConfiguration {
	own := map[string]string{
		"PORT":          strconv.Itoa(t.Port),
		"SKIFF_APP":     t.App,
		"SKIFF_RELEASE": strconv.Itoa(t.Release),
	}
	var out []*coreac.EnvVarApplyConfiguration
	for _, k := range slices.Sorted(maps.Keys(t.Env)) {
		if _, ok := own[k]; ok || k == "SKIFF_INSTANCE" {
			continue
		}
		out = append(out, coreac.EnvVar().WithName(k).WithValue(t.Env[k]))
	}
	for _, k := range slices.Sorted(maps.Keys(own)) {
		out = append(out, coreac.EnvVar().WithName(k).WithValue(own[k]))
	}
	return append(out, coreac.EnvVar().WithName("SKIFF_INSTANCE").WithValueFrom(
		coreac.EnvVarSource().WithFieldRef(coreac.ObjectFieldSelector().WithFieldPath("metadata.name"))))
}

// resources sets requests equal to limits: the scheduler places a pod by
// what it may use, and the pod gets the Guaranteed class when both are
// set.
func resources(r instance.Resources) *coreac.ResourceRequirementsApplyConfiguration {
	list := corev1.ResourceList{}
	if r.CPU > 0 {
		list[corev1.ResourceCPU] = *resource.NewMilliQuantity(int64(math.Ceil(r.CPU*1000)), resource.DecimalSI)
	}
	if r.MemoryBytes > 0 {
		list[corev1.ResourceMemory] = *resource.NewQuantity(r.MemoryBytes, resource.BinarySI)
	}
	if len(list) == 0 {
		return nil
	}
	return coreac.ResourceRequirements().WithLimits(list).WithRequests(maps.Clone(list))
}

// probes turns the template's health into kubelet probes. Readiness takes
// a pod out of traffic after Threshold failures. The startup probe holds
// liveness off until the pod was first ready, for up to ReadyTimeout,
// which is the supervisor's "restart only once ready" rule; liveness then
// restarts the container after LivenessThreshold failures. Kubelet counts
// periods in whole seconds, so sub-second intervals round up to 1s.
func probes(t instance.Template) (readiness, liveness, startup *coreac.ProbeApplyConfiguration) {
	h := t.Health
	interval := cmp.Or(h.Interval, defaultInterval)
	timeout := cmp.Or(h.Timeout, defaultTimeout)
	period := seconds(interval)
	handler := func() *coreac.ProbeApplyConfiguration {
		p := coreac.Probe().WithPeriodSeconds(period).WithTimeoutSeconds(seconds(timeout)).WithSuccessThreshold(1)
		if h.Path != "" && !h.TCP {
			return p.WithHTTPGet(coreac.HTTPGetAction().WithPath(h.Path).WithPort(intstr.FromInt32(int32(t.Port))))
		}
		return p.WithTCPSocket(coreac.TCPSocketAction().WithPort(intstr.FromInt32(int32(t.Port))))
	}
	readiness = handler().WithFailureThreshold(int32(cmp.Or(h.Threshold, defaultThreshold)))
	ready := cmp.Or(h.ReadyTimeout, defaultReadyTimeout)
	startup = handler().WithFailureThreshold(max(1, int32(math.Ceil(ready.Seconds()/float64(period)))))
	switch n := h.LivenessThreshold; {
	case n < 0:
		liveness = nil
	default:
		liveness = handler().WithFailureThreshold(int32(cmp.Or(n, defaultLiveness)))
	}
	return readiness, liveness, startup
}

func seconds(d time.Duration) int32 { return max(1, int32(math.Ceil(d.Seconds()))) }

func cmpOr[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// PodDisruptionBudget renders the app's budget: voluntary disruptions
// (a node drained for maintenance) take at most one of its pods at a
// time, across releases.
func PodDisruptionBudget(app, namespace string) *policyac.PodDisruptionBudgetApplyConfiguration {
	return policyac.PodDisruptionBudget(app, namespace).
		WithLabels(objectLabels(app)).
		WithSpec(policyac.PodDisruptionBudgetSpec().
			WithMaxUnavailable(intstr.FromInt32(1)).
			WithSelector(metaac.LabelSelector().WithMatchLabels(map[string]string{LabelApp: app, LabelManagedBy: ManagedBy})))
}
