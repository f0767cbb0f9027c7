package supervisor

import "sync"

// notifier calls Watch callbacks from a goroutine of its own, so a slow
// callback never holds up an instance's life, and collapses bursts: a
// callback learns that an app changed, then reads fresh state.
type notifier struct {
	mu      sync.Mutex
	fns     []func(app string)
	pending []string
	queued  map[string]bool
	wake    chan struct{}
	quit    chan struct{}
	once    sync.Once
	started bool
}

func newNotifier() *notifier {
	return &notifier{queued: make(map[string]bool), wake: make(chan struct{}, 1), quit: make(chan struct{})}
}

// add registers fn and starts the delivering goroutine with the first one.
func (n *notifier) add(fn func(app string)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.fns = append(n.fns, fn)
	if !n.started {
		n.started = true
		go n.loop()
	}
}

// send says that app changed. It never blocks.
func (n *notifier) send(app string) {
	n.mu.Lock()
	if len(n.fns) == 0 || n.queued[app] {
		n.mu.Unlock()
		return
	}
	n.queued[app] = true
	n.pending = append(n.pending, app)
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

func (n *notifier) loop() {
	for {
		select {
		case <-n.quit:
			return
		case <-n.wake:
		}
		n.mu.Lock()
		apps, fns := n.pending, n.fns
		n.pending = nil
		clear(n.queued)
		n.mu.Unlock()
		for _, app := range apps {
			for _, fn := range fns {
				fn(app)
			}
		}
	}
}

func (n *notifier) close() { n.once.Do(func() { close(n.quit) }) }
