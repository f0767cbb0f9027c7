package kubernetes

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/skiff-sh/skiff/internal/instance"
)

func testPod(edit func(p *corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:   "web-3-abcde",
			Labels: map[string]string{LabelApp: "web", LabelRelease: "3", LabelManagedBy: ManagedBy},
		},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name:  ContainerName,
			Ports: []corev1.ContainerPort{{Name: "app", ContainerPort: 8080}, {ContainerPort: 25565}},
		}}},
	}
	edit(p)
	return p
}

func running(p *corev1.Pod) {
	p.Spec.NodeName = "n1"
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = "10.244.0.7"
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionTrue}, {Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{
		Name: ContainerName, Ready: true, Started: ptr.To(true),
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}},
	}}
}

func TestPodInstance(t *testing.T) {
	now := metav1.NewTime(time.Unix(1_800_000_000, 0))
	for _, tc := range []struct {
		name     string
		pod      *corev1.Pod
		gone     bool
		state    instance.State
		endpoint string
		check    func(t *testing.T, in instance.Instance)
	}{
		{name: "ready", pod: testPod(running), state: instance.Ready, endpoint: "10.244.0.7:8080",
			check: func(t *testing.T, in instance.Instance) {
				if in.App != "web" || in.Release != 3 || in.ID != "web-3-abcde" {
					t.Errorf("identity %q %d %q", in.App, in.Release, in.ID)
				}
				if in.Ports[25565] != "10.244.0.7:25565" {
					t.Errorf("other ports %v, want 25565 at the pod IP", in.Ports)
				}
			}},
		{name: "unschedulable", pod: testPod(func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Message: "0/3 nodes are available: 3 Insufficient cpu."}}
		}), state: instance.Starting, check: func(t *testing.T, in instance.Instance) {
			if in.Message != "cannot be scheduled yet: 0/3 nodes are available: 3 Insufficient cpu." {
				t.Errorf("message %q", in.Message)
			}
		}},
		{name: "image pull failing", pod: testPod(func(p *corev1.Pod) {
			p.Status.Phase = corev1.PodPending
			p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: ContainerName, State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff", Message: "pull access denied"}}}}
		}), state: instance.Starting, check: func(t *testing.T, in instance.Instance) {
			if in.Message != "ImagePullBackOff: pull access denied" {
				t.Errorf("message %q", in.Message)
			}
		}},
		{name: "failing readiness", pod: testPod(func(p *corev1.Pod) {
			running(p)
			p.Status.Conditions[1].Status = corev1.ConditionFalse
			p.Status.ContainerStatuses[0].Ready = false
		}), state: instance.Unready, endpoint: "10.244.0.7:8080"},
		{name: "crash loop after an OOM kill", pod: testPod(func(p *corev1.Pod) {
			running(p)
			p.Status.Conditions[1].Status = corev1.ConditionFalse
			p.Status.ContainerStatuses[0] = corev1.ContainerStatus{
				Name: ContainerName, RestartCount: 3,
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff", Message: "back-off 40s"}},
				LastTerminationState: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
					ExitCode: 137, Reason: "OOMKilled", FinishedAt: now, Message: "line one\nline two\n"}},
			}
		}), state: instance.CrashLoop, endpoint: "10.244.0.7:8080", check: func(t *testing.T, in instance.Instance) {
			if in.Restarts != 3 || in.LastExit == nil || !in.LastExit.OOM || in.LastExit.Code != 137 || !in.LastExit.At.Equal(now.Time) {
				t.Errorf("restarts %d, last exit %+v", in.Restarts, in.LastExit)
			}
			if len(in.LastExit.LogTail) != 2 || in.LastExit.LogTail[1] != "line two" {
				t.Errorf("log tail %q", in.LastExit.LogTail)
			}
		}},
		{name: "draining", pod: testPod(func(p *corev1.Pod) {
			running(p)
			p.Annotations = map[string]string{AnnotationDraining: "true"}
		}), state: instance.Draining, endpoint: "10.244.0.7:8080"},
		{name: "terminating", pod: testPod(func(p *corev1.Pod) { running(p); p.DeletionTimestamp = &now }), gone: true},
		{name: "failed", pod: testPod(func(p *corev1.Pod) { p.Status.Phase = corev1.PodFailed }), gone: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in, ok := PodInstance(tc.pod)
			if ok == tc.gone {
				t.Fatalf("PodInstance reported ok=%v, want %v", ok, !tc.gone)
			}
			if tc.gone {
				return
			}
			if in.State != tc.state || in.Endpoint != tc.endpoint {
				t.Errorf("state %q endpoint %q, want %q %q (message %q)", in.State, in.Endpoint, tc.state, tc.endpoint, in.Message)
			}
			if tc.check != nil {
				tc.check(t, in)
			}
		})
	}
}
