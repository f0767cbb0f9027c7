// Package endpointslices lets an edge running on a cluster find the
// ready pods of each release itself: it watches the EndpointSlices of
// skiff's Services in one namespace (each release has a headless Service
// selecting its pods) and lists, per Service, the endpoints that are
// ready, named by their pod. It is the edgefeed.Finder of `skiff edge
// --kube-namespace`; edgefeed.Discovering serves the control plane's
// routes with what it lists, so the edge follows pods as they come and
// go even while the control plane is away.
//
// It needs only get, list and watch on endpointslices in that namespace.
package endpointslices

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	clientset "k8s.io/client-go/kubernetes"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/skiff-sh/skiff/internal/edgefeed"
	"github.com/skiff-sh/skiff/internal/runtime/kubernetes"
)

var _ edgefeed.Finder = (*Watcher)(nil)

// Watcher keeps a cache of the EndpointSlices of skiff's Services in one
// namespace.
type Watcher struct {
	namespace string
	log       *slog.Logger
	factory   informers.SharedInformerFactory
	slices    discoverylisters.EndpointSliceNamespaceLister
	synced    cache.InformerSynced
	stop      chan struct{}
	once      sync.Once

	mu       sync.Mutex
	onChange []func()
}

// New watches namespace through client, once Start is called. The
// EndpointSlice controller copies a Service's labels to its slices, so
// only slices of Services labelled as skiff's are watched.
func New(client clientset.Interface, namespace string, log *slog.Logger) *Watcher {
	if log == nil {
		log = slog.Default()
	}
	managed := labels.SelectorFromSet(labels.Set{kubernetes.LabelManagedBy: kubernetes.ManagedBy}).String()
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = managed }))
	inf := factory.Discovery().V1().EndpointSlices()
	w := &Watcher{
		namespace: namespace,
		log:       log.With("component", "endpointslices", "namespace", namespace),
		factory:   factory,
		slices:    inf.Lister().EndpointSlices(namespace),
		synced:    inf.Informer().HasSynced,
		stop:      make(chan struct{}),
	}
	changed := func(any) { w.changed() }
	// The handler cannot fail on a new informer.
	_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    changed,
		UpdateFunc: func(_, obj any) { changed(obj) },
		DeleteFunc: changed,
	})
	return w
}

// OnChange calls fn, from the informer's goroutine, after every change
// of a watched slice. fn should be quick: hand the work to a goroutine of
// your own (see Notify).
func (w *Watcher) OnChange(fn func()) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.onChange = append(w.onChange, fn)
}

func (w *Watcher) changed() {
	w.mu.Lock()
	fns := slices.Clone(w.onChange)
	w.mu.Unlock()
	for _, fn := range fns {
		fn()
	}
}

// Start lists and watches the slices, and returns once the cache holds
// them or ctx ends, with an error saying why the cluster did not answer.
// The watch goes on, reconnecting by itself, until Close.
func (w *Watcher) Start(ctx context.Context) error {
	w.factory.Start(w.stop)
	if !cache.WaitForCacheSync(ctx.Done(), w.synced) {
		return fmt.Errorf("list endpointslices in namespace %s (the edge's service account needs get, list and watch on them): %w", w.namespace, ctx.Err())
	}
	w.log.Info("watching endpointslices")
	return nil
}

// Close stops watching.
func (w *Watcher) Close() {
	w.once.Do(func() {
		close(w.stop)
		w.factory.Shutdown()
	})
}

// Ready lists the endpoints of service's slices that are ready (an
// absent condition counts as ready, as the API says) and not
// terminating, once per pod, sorted by pod name. It reports false when
// no slice of service is cached.
func (w *Watcher) Ready(service string) ([]edgefeed.Endpoint, bool) {
	list, err := w.slices.List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: service}))
	if err != nil || len(list) == 0 {
		return nil, false
	}
	seen := map[string]bool{}
	var out []edgefeed.Endpoint
	for _, s := range list {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		for _, ep := range s.Endpoints {
			if !ready(ep) || len(ep.Addresses) == 0 || ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
				continue
			}
			// A pod may show in two slices while the controller moves
			// it, or in one per address family: one backend per pod.
			if seen[ep.TargetRef.Name] {
				continue
			}
			seen[ep.TargetRef.Name] = true
			out = append(out, edgefeed.Endpoint{ID: ep.TargetRef.Name, IP: ep.Addresses[0]})
		}
	}
	slices.SortFunc(out, func(a, b edgefeed.Endpoint) int { return cmp.Compare(a.ID, b.ID) })
	return out, true
}

func ready(ep discoveryv1.Endpoint) bool {
	c := ep.Conditions
	if c.Terminating != nil && *c.Terminating {
		return false
	}
	return c.Ready == nil || *c.Ready
}

// Notify returns a channel that receives (without blocking the watch)
// after changes, at most one pending at a time: a burst of slice updates
// becomes one wake-up.
func (w *Watcher) Notify() <-chan struct{} {
	ch := make(chan struct{}, 1)
	w.OnChange(func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	})
	return ch
}
