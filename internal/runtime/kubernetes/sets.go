package kubernetes

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/skiff-sh/skiff/internal/instance"
)

// Sets reports the app's ReplicaSets by release: the size is the
// ReplicaSet's replicas, the instances its pods that are not terminating
// or finished; those on a node that is gone or not Ready are unready.
func (r *Runtime) Sets(ctx context.Context, app string) ([]instance.Set, error) {
	if err := r.ready(); err != nil {
		return nil, fmt.Errorf("list sets of %s: %w", app, err)
	}
	rss, err := r.rsets.List(labels.SelectorFromSet(labels.Set{LabelApp: app, LabelManagedBy: ManagedBy}))
	if err != nil {
		return nil, fmt.Errorf("list replicasets of %s: %w", app, err)
	}
	out := []instance.Set{}
	for _, rs := range rss {
		release, err := strconv.Atoi(rs.Labels[LabelRelease])
		if err != nil || release <= 0 || rs.DeletionTimestamp != nil {
			continue
		}
		set := instance.Set{App: app, Release: release, Size: replicas(rs), Instances: []instance.Instance{},
			Published: r.published(rs, app, release)}
		pods, err := r.pods.List(labels.SelectorFromSet(setLabels(app, release)))
		if err != nil {
			return nil, fmt.Errorf("list pods of %s: %w", rs.Name, err)
		}
		for _, p := range pods {
			if in, ok := PodInstance(p); ok {
				set.Instances = append(set.Instances, onLostNode(in, nodeLost(r.nodes, p)))
			}
		}
		slices.SortFunc(set.Instances, func(a, b instance.Instance) int { return cmp.Compare(a.ID, b.ID) })
		out = append(out, set)
	}
	slices.SortFunc(out, func(a, b instance.Set) int { return cmp.Compare(a.Release, b.Release) })
	return out, nil
}

// Apps lists the apps that have a ReplicaSet, sorted.
func (r *Runtime) Apps(ctx context.Context) ([]string, error) {
	if err := r.ready(); err != nil {
		return nil, fmt.Errorf("list apps: %w", err)
	}
	rss, err := r.rsets.List(labels.Everything())
	if err != nil {
		return nil, fmt.Errorf("list replicasets: %w", err)
	}
	var apps []string
	for _, rs := range rss {
		if app := rs.Labels[LabelApp]; app != "" && !slices.Contains(apps, app) {
			apps = append(apps, app)
		}
	}
	slices.Sort(apps)
	return apps, nil
}

func replicas(rs *appsv1.ReplicaSet) int {
	if rs.Spec.Replicas == nil {
		return 1 // the API's default
	}
	return int(*rs.Spec.Replicas)
}

// PodInstance describes a pod as an instance, or reports false for a pod
// that is no longer one: terminating (it was removed, or its node is
// gone) or finished (its ReplicaSet replaces it).
func PodInstance(p *corev1.Pod) (instance.Instance, bool) {
	if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return instance.Instance{}, false
	}
	release, _ := strconv.Atoi(p.Labels[LabelRelease])
	in := instance.Instance{
		ID:        p.Name,
		App:       p.Labels[LabelApp],
		Release:   release,
		StartedAt: p.CreationTimestamp.Time,
	}
	if p.Status.StartTime != nil {
		in.StartedAt = p.Status.StartTime.Time
	}
	if ip := p.Status.PodIP; ip != "" {
		for _, c := range p.Spec.Containers {
			if c.Name != ContainerName {
				continue
			}
			for _, port := range c.Ports {
				addr := net.JoinHostPort(ip, strconv.Itoa(int(port.ContainerPort)))
				if port.Name == "app" {
					in.Endpoint = addr
					continue
				}
				if in.Ports == nil {
					in.Ports = map[int]string{}
				}
				in.Ports[int(port.ContainerPort)] = addr
			}
		}
	}
	var cs *corev1.ContainerStatus
	for i := range p.Status.ContainerStatuses {
		if p.Status.ContainerStatuses[i].Name == ContainerName {
			cs = &p.Status.ContainerStatuses[i]
		}
	}
	if cs != nil {
		in.Restarts = int(cs.RestartCount)
		if t := cs.LastTerminationState.Terminated; t != nil {
			in.LastExit = &instance.Exit{Code: int(t.ExitCode), At: t.FinishedAt.Time, OOM: t.Reason == "OOMKilled"}
			if t.Message != "" {
				in.LastExit.LogTail = strings.Split(strings.TrimRight(t.Message, "\n"), "\n")
			}
		}
	}
	in.State, in.Message = podState(p, cs, in.Endpoint != "")
	return in, true
}

func podState(p *corev1.Pod, cs *corev1.ContainerStatus, hasEndpoint bool) (instance.State, string) {
	if p.Annotations[AnnotationDraining] == "true" {
		return instance.Draining, "draining: chosen to leave"
	}
	if cs != nil && cs.State.Waiting != nil && cs.State.Waiting.Reason == "CrashLoopBackOff" {
		return instance.CrashLoop, "crash-looping: " + cs.State.Waiting.Message
	}
	if hasEndpoint && condition(p, corev1.PodReady) == corev1.ConditionTrue {
		return instance.Ready, ""
	}
	if cs != nil && cs.State.Running != nil && cs.Started != nil && *cs.Started {
		return instance.Unready, "failing its readiness probe"
	}
	if c := findCondition(p, corev1.PodScheduled); c != nil && c.Status == corev1.ConditionFalse {
		return instance.Starting, "cannot be scheduled yet: " + c.Message
	}
	if cs != nil && cs.State.Waiting != nil && cs.State.Waiting.Reason != "" {
		msg := cs.State.Waiting.Reason
		if m := cs.State.Waiting.Message; m != "" {
			msg += ": " + m
		}
		return instance.Starting, msg
	}
	return instance.Starting, "starting"
}

func condition(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	if c := findCondition(p, t); c != nil {
		return c.Status
	}
	return corev1.ConditionUnknown
}

func findCondition(p *corev1.Pod, t corev1.PodConditionType) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == t {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}
