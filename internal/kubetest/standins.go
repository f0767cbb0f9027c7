package kubetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"
)

// StandIns answer HTTP for a namespace's pods, which kwok only pretends
// to run: for every pod with an IP, a listener on podIP:port, where port
// is the pod's first container port. GET /healthz answers "ok"; any
// other request gets the pod's answer. A listener starts when its pod
// gets an IP and stops when the pod is deleted (kwok deletes a pod at
// once, so that is when its process would be gone), or when the node it
// runs on is lost (StopNode).
//
// Binding pod IPs needs them to be local: use StandIns inside InNetNS.
type StandIns struct {
	t      testing.TB
	answer func(*corev1.Pod) string

	mu      sync.Mutex
	running map[string]*standIn // by pod UID
	lost    map[string]bool     // nodes whose pods answer no more
	gone    map[string]bool     // pod UIDs that must not start again
	deleted []*corev1.Pod       // as last seen, in order
}

type standIn struct {
	pod, node, addr string
	srv             *http.Server
}

// StartStandIns watches ns and answers for its pods with answer(pod),
// until t ends.
func (c *Cluster) StartStandIns(t testing.TB, ns string, answer func(*corev1.Pod) string) *StandIns {
	t.Helper()
	s := &StandIns{t: t, answer: answer, running: map[string]*standIn{}, lost: map[string]bool{}, gone: map[string]bool{}}
	factory := informers.NewSharedInformerFactoryWithOptions(c.Client, 0, informers.WithNamespace(ns))
	inf := factory.Core().V1().Pods().Informer()
	_, err := inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { s.update(obj) },
		UpdateFunc: func(_, obj any) { s.update(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				s.stop(string(p.UID), true)
				s.mu.Lock()
				s.deleted = append(s.deleted, p)
				s.mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatalf("watch pods of %s: %v", ns, err)
	}
	stop := make(chan struct{})
	factory.Start(stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
		close(stop)
		t.Fatalf("list pods of %s: not within 30s", ns)
	}
	t.Cleanup(func() {
		close(stop)
		factory.Shutdown()
		s.mu.Lock()
		uids := make([]string, 0, len(s.running))
		for uid := range s.running {
			uids = append(uids, uid)
		}
		s.mu.Unlock()
		for _, uid := range uids {
			s.stop(uid, true)
		}
	})
	return s
}

// update starts a stand-in for a pod that has an IP and none yet.
func (s *StandIns) update(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Status.PodIP == "" || len(p.Spec.Containers) == 0 || len(p.Spec.Containers[0].Ports) == 0 {
		return
	}
	uid := string(p.UID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running[uid] != nil || s.gone[uid] || s.lost[p.Spec.NodeName] {
		return
	}
	addr := net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(p.Spec.Containers[0].Ports[0].ContainerPort)))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		s.t.Errorf("stand-in for pod %s: %v", p.Name, err)
		s.gone[uid] = true
		return
	}
	body := s.answer(p)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				_, _ = w.Write([]byte("ok"))
				return
			}
			_, _ = w.Write([]byte(body))
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	s.running[uid] = &standIn{pod: p.Name, node: p.Spec.NodeName, addr: addr, srv: srv}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.t.Errorf("stand-in for pod %s at %s: %v", p.Name, addr, err)
		}
	}()
}

// stop ends uid's stand-in; for good when the pod is gone.
func (s *StandIns) stop(uid string, forGood bool) {
	s.mu.Lock()
	in := s.running[uid]
	delete(s.running, uid)
	if forGood {
		s.gone[uid] = true
	}
	s.mu.Unlock()
	if in != nil {
		// Close, not Shutdown: a process that is gone finishes nothing.
		_ = in.srv.Close()
	}
}

// StopNode makes the pods on node stop answering, and keeps its future
// pods from starting, as when the machine is lost.
func (s *StandIns) StopNode(node string) {
	s.mu.Lock()
	s.lost[node] = true
	var uids []string
	for uid, in := range s.running {
		if in.node == node {
			uids = append(uids, uid)
		}
	}
	s.mu.Unlock()
	for _, uid := range uids {
		s.stop(uid, true)
	}
}

// Answering lists the pods that answer now, by name, with their
// addresses.
func (s *StandIns) Answering() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := make(map[string]string, len(s.running))
	for _, in := range s.running {
		m[in.pod] = in.addr
	}
	return m
}

// Deleted lists the pods deleted so far, oldest first, each as last seen
// before it went (with its annotations).
func (s *StandIns) Deleted() []*corev1.Pod {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.deleted)
}

// String is for failure messages.
func (s *StandIns) String() string { return fmt.Sprint(s.Answering()) }
