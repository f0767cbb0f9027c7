// Package kubernetes is the runtime that runs image apps as pods on a
// Kubernetes cluster. It implements the set level (controller.Runtime)
// directly: each release is one ReplicaSet, so Kubernetes, not skiff,
// keeps instances running and heals them when nodes fail.
//
// Everything it creates carries app.kubernetes.io/managed-by=skiff and
// lives in one namespace; it reads and changes nothing else. Templates
// are rendered by pure functions (ReplicaSet, PodDisruptionBudget) and
// applied server-side as field manager "skiff"; sizes go through the
// scale subresource, so applying a template never undoes a scale. What
// runs is read from informers' caches of the namespace's skiff-managed
// ReplicaSets and pods: an instance is a pod, its endpoint the pod IP and
// the app's port, its state the pod's readiness. A cache of the cluster's
// nodes (when skiff may watch them) makes a pod on a deleted or NotReady
// node unready at once, instead of when Kubernetes gets round to it.
//
// Each release also has a headless Service (ServiceName) selecting its
// pods, created and deleted with its ReplicaSet: the EndpointSlice
// controller then lists the release's pods and their readiness, which an
// edge running on its own follows without the control plane (Sets names
// the Service in Set.Published).
//
// An app's volumes are PersistentVolumeClaims of the app, not of a
// release (ClaimName): applied before a release's ReplicaSet is created,
// mounted by every release, so data outlives releases as a Docker volume
// does on one host, and deleted only when the app is destroyed
// (DeleteVolumes).
//
// What the pods' containers write reaches the log collector as a
// process's or a container's output does on one host: FollowLogs follows
// each pod's log through the API into a raw file of the pod's own
// (logs.go).
//
// To remove one chosen instance the controller first marks it draining
// (an annotation that also gives the pod the lowest
// controller.kubernetes.io/pod-deletion-cost), takes it out of the edge,
// then calls Remove, which scales the ReplicaSet down by one so that the
// ReplicaSet controller deletes exactly that pod, and deletes the pod
// itself if the ReplicaSet chose another (one ranked worse: unscheduled,
// pending or not ready, so carrying no traffic).
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	clientset "k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

var (
	// ErrNotStarted means Start has not returned yet.
	ErrNotStarted = errors.New("kubernetes runtime not started")
	// ErrNotFound means no skiff pod of that app has that name.
	ErrNotFound = errors.New("instance not found")
	// ErrNotOurs refuses to change an object skiff did not create.
	ErrNotOurs = errors.New("an object in the way is not skiff's")
)

// Options configure a Runtime.
type Options struct {
	// Client reaches the cluster. Required.
	Client clientset.Interface
	// Namespace holds every object of skiff's apps. Required.
	Namespace string
	// StopGrace is how long a pod has between SIGTERM and SIGKILL.
	// Default 10s.
	StopGrace time.Duration
	// RemoveWait bounds how long Remove waits for the ReplicaSet to
	// delete the chosen pod before deleting it itself. Default 10s.
	RemoveWait time.Duration
	// StorageClass of the apps' volume claims (skiff server
	// --storage-class). Default: the cluster's default class.
	StorageClass string
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Runtime runs releases as ReplicaSets in one namespace.
type Runtime struct {
	opts    Options
	log     *slog.Logger
	render  RenderOptions
	factory informers.SharedInformerFactory
	rsets   appslisters.ReplicaSetNamespaceLister
	pods    corelisters.PodNamespaceLister
	// services are the releases' headless Services (ServiceName).
	services corelisters.ServiceNamespaceLister
	// podIndex finds the pods on a node (podNodeIndex).
	podIndex cache.Indexer
	synced   []cache.InformerSynced
	stop     chan struct{}
	// nodes is nil when skiff may not watch nodes; both are set once,
	// in Start.
	nodeFactory informers.SharedInformerFactory
	nodes       corelisters.NodeLister

	mu       sync.Mutex
	started  bool
	closed   bool
	watchers []func(app string)
}

// New makes a runtime; Start begins watching the cluster.
func New(opts Options) (*Runtime, error) {
	if opts.Client == nil {
		return nil, errors.New("kubernetes runtime: a client is required")
	}
	if opts.Namespace == "" {
		return nil, errors.New("kubernetes runtime: a namespace is required (--namespace)")
	}
	if opts.RemoveWait == 0 {
		opts.RemoveWait = 10 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	managed := labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy}).String()
	factory := informers.NewSharedInformerFactoryWithOptions(opts.Client, 0,
		informers.WithNamespace(opts.Namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = managed }))
	rsInformer := factory.Apps().V1().ReplicaSets()
	podInformer := factory.Core().V1().Pods()
	svcInformer := factory.Core().V1().Services()
	r := &Runtime{
		opts:     opts,
		log:      log,
		render:   RenderOptions{Namespace: opts.Namespace, StopGrace: opts.StopGrace, StorageClass: opts.StorageClass},
		factory:  factory,
		rsets:    rsInformer.Lister().ReplicaSets(opts.Namespace),
		pods:     podInformer.Lister().Pods(opts.Namespace),
		podIndex: podInformer.Informer().GetIndexer(),
		services: svcInformer.Lister().Services(opts.Namespace),
		synced: []cache.InformerSynced{rsInformer.Informer().HasSynced, podInformer.Informer().HasSynced,
			svcInformer.Informer().HasSynced},
		stop: make(chan struct{}),
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    r.changed,
		UpdateFunc: func(_, obj any) { r.changed(obj) },
		DeleteFunc: r.changed,
	}
	if _, err := rsInformer.Informer().AddEventHandler(handler); err != nil {
		return nil, fmt.Errorf("watch replicasets: %w", err)
	}
	if _, err := podInformer.Informer().AddEventHandler(handler); err != nil {
		return nil, fmt.Errorf("watch pods: %w", err)
	}
	if err := podInformer.Informer().AddIndexers(cache.Indexers{podNodeIndex: indexPodByNode}); err != nil {
		return nil, fmt.Errorf("index pods by node: %w", err)
	}
	// A release's Service appearing changes what Sets publishes.
	if _, err := svcInformer.Informer().AddEventHandler(handler); err != nil {
		return nil, fmt.Errorf("watch services: %w", err)
	}
	return r, nil
}

// Start lists and watches the namespace's skiff objects and returns once
// the caches hold them, or with an error saying why the cluster did not
// answer.
func (r *Runtime) Start(ctx context.Context) error {
	r.factory.Start(r.stop)
	if !cache.WaitForCacheSync(ctx.Done(), r.synced...) {
		return fmt.Errorf("kubernetes runtime: list replicasets, pods and services in namespace %s: %w", r.opts.Namespace, ctx.Err())
	}
	if err := r.watchNodes(ctx); err != nil {
		return err
	}
	r.mu.Lock()
	r.started = true
	r.mu.Unlock()
	return nil
}

// Close stops watching. Pods keep running: the data plane outlives the
// control plane.
func (r *Runtime) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	close(r.stop)
	r.factory.Shutdown()
	if r.nodeFactory != nil {
		r.nodeFactory.Shutdown()
	}
}

func (r *Runtime) ready() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.started || r.closed {
		return ErrNotStarted
	}
	return nil
}

// Watch calls fn with an app's name whenever one of its ReplicaSets,
// pods or Services changes, or a node that holds one of its pods is
// deleted or changes readiness. Calls come from the informers'
// goroutines.
func (r *Runtime) Watch(fn func(app string)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.watchers = append(r.watchers, fn)
}

func (r *Runtime) changed(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, ok := obj.(metav1.Object)
	if !ok || o.GetLabels()[LabelApp] == "" {
		return
	}
	r.notify(o.GetLabels()[LabelApp])
}

// notify calls the watchers with app.
func (r *Runtime) notify(app string) {
	r.mu.Lock()
	fns := slices.Clone(r.watchers)
	r.mu.Unlock()
	for _, fn := range fns {
		fn(app)
	}
}

// awaitCache polls the informers' view until ok holds, so a caller's
// next read (Sets) sees its own write. A cache that lags past the bound
// is not an error: the watch brings the change soon after.
func (r *Runtime) awaitCache(ctx context.Context, ok func() bool) {
	deadline := time.Now().Add(5 * time.Second)
	for !ok() && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// podOf finds app's pod id in the cache.
func (r *Runtime) podOf(app, id string) (*corev1.Pod, error) {
	p, err := r.pods.Get(id)
	if err != nil || p.Labels[LabelApp] != app {
		return nil, fmt.Errorf("pod %s of app %s in namespace %s: %w", id, app, r.opts.Namespace, ErrNotFound)
	}
	return p, nil
}
