package kubernetes

import (
	"context"
	"fmt"
	"maps"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	coreac "k8s.io/client-go/applyconfigurations/core/v1"
	metaac "k8s.io/client-go/applyconfigurations/meta/v1"

	"github.com/skiff-sh/skiff/internal/instance"
)

// ServicePortName is the port of a release's Service that the app
// answers requests on; the tcp: targets are "tcp-<port>".
const ServicePortName = "app"

// ServiceName names a release's headless Service: skiff-<app>-<release>.
// A Service name must start with a letter, which an app's need not; the
// prefix also keeps them apart from the install's own Services, whose
// names do not end in a number.
func ServiceName(app string, release int) string { return "skiff-" + SetName(app, release) }

// Service renders the headless Service of t's release. It gives the
// release no address of its own (clusterIP None): it exists so that the
// EndpointSlice controller lists the release's pods, ready or not, with
// their names and addresses, for edges that follow them themselves.
func Service(t instance.Template, o RenderOptions) (*coreac.ServiceApplyConfiguration, error) {
	if err := CheckTemplate(t); err != nil {
		return nil, err
	}
	if o.Namespace == "" {
		return nil, fmt.Errorf("render: a namespace is required")
	}
	sel := setLabels(t.App, t.Release)
	labels := objectLabels(t.App)
	maps.Copy(labels, sel)
	spec := coreac.ServiceSpec().
		WithClusterIP(corev1.ClusterIPNone).
		WithSelector(sel).
		WithPorts(coreac.ServicePort().WithName(ServicePortName).WithProtocol(corev1.ProtocolTCP).
			WithPort(int32(t.Port)).WithTargetPort(intstr.FromInt32(int32(t.Port))))
	seen := map[int]bool{t.Port: true}
	for _, p := range t.Ports {
		if seen[p] {
			continue
		}
		seen[p] = true
		spec.WithPorts(coreac.ServicePort().WithName("tcp-" + strconv.Itoa(p)).WithProtocol(corev1.ProtocolTCP).
			WithPort(int32(p)).WithTargetPort(intstr.FromInt32(int32(p))))
	}
	return coreac.Service(ServiceName(t.App, t.Release), o.Namespace).WithLabels(labels).WithSpec(spec), nil
}

// applyService applies the release's Service, owned by its ReplicaSet so
// that the garbage collector removes it with the ReplicaSet whoever
// deletes that.
func (r *Runtime) applyService(ctx context.Context, t instance.Template, rs *appsv1.ReplicaSet) error {
	svc, err := Service(t, r.render)
	if err != nil {
		return err
	}
	services := r.opts.Client.CoreV1().Services(r.opts.Namespace)
	if err := notOurs(services.Get(ctx, *svc.Name, metav1.GetOptions{})); err != nil {
		return err
	}
	svc.WithOwnerReferences(metaac.OwnerReference().
		WithAPIVersion("apps/v1").WithKind("ReplicaSet").WithName(rs.Name).WithUID(rs.UID))
	if _, err := services.Apply(ctx, svc, metav1.ApplyOptions{FieldManager: FieldManager, Force: true}); err != nil {
		return fmt.Errorf("apply service %s: %w", *svc.Name, err)
	}
	return nil
}

// ensureService applies the release's Service when the cache has none:
// a ReplicaSet made by a skiff that made no Services gets one on its
// next scale.
func (r *Runtime) ensureService(ctx context.Context, t instance.Template, name string) error {
	if _, err := r.services.Get(ServiceName(t.App, t.Release)); err == nil {
		return nil
	}
	rs, err := r.opts.Client.AppsV1().ReplicaSets(r.opts.Namespace).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("read replicaset %s: %w", name, err)
	}
	if err := r.applyService(ctx, t, rs); err != nil {
		return err
	}
	r.awaitCache(ctx, func() bool { _, err := r.services.Get(ServiceName(t.App, t.Release)); return err == nil })
	return nil
}

// deleteService deletes the release's Service, if it is skiff's.
func (r *Runtime) deleteService(ctx context.Context, app string, release int) error {
	name := ServiceName(app, release)
	services := r.opts.Client.CoreV1().Services(r.opts.Namespace)
	svc, err := services.Get(ctx, name, metav1.GetOptions{})
	if err == nil && svc.Labels[LabelManagedBy] == ManagedBy {
		err = services.Delete(ctx, name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &svc.UID}})
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("delete service %s: %w", name, err)
	}
	return nil
}

// published says where the release's pods are listed, when its Service
// exists: the port is the one the ReplicaSet's pods answer on.
func (r *Runtime) published(rs *appsv1.ReplicaSet, app string, release int) *instance.Published {
	name := ServiceName(app, release)
	if _, err := r.services.Get(name); err != nil {
		return nil
	}
	for _, c := range rs.Spec.Template.Spec.Containers {
		if c.Name != ContainerName {
			continue
		}
		for _, p := range c.Ports {
			if p.Name == ServicePortName {
				return &instance.Published{Service: name, Port: int(p.ContainerPort)}
			}
		}
	}
	return nil
}
