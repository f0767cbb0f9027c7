package kubernetes

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/skiff-sh/skiff/internal/kubetest"
	"github.com/skiff-sh/skiff/internal/logs"
)

func TestDedup(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 100, time.UTC)
	stamp := func(d time.Duration, text string) string {
		return t0.Add(d).Format(time.RFC3339Nano) + " " + text + "\n"
	}
	for _, tc := range []struct {
		name  string
		start logPos
		lines []string
		want  []string
		pos   logPos
	}{
		{
			name:  "from the start everything goes through",
			lines: []string{stamp(0, "a"), stamp(0, "b"), stamp(time.Second, "c")},
			want:  []string{"a\n", "b\n", "c\n"},
			pos:   logPos{Time: t0.Add(time.Second), Count: 1},
		},
		{
			name:  "resumed: earlier lines and those counted at the last time are dropped",
			start: logPos{Time: t0, Count: 2},
			lines: []string{stamp(-time.Millisecond, "old"), stamp(0, "a"), stamp(0, "b"), stamp(0, "c"), stamp(time.Second, "d")},
			want:  []string{"c\n", "d\n"},
			pos:   logPos{Time: t0.Add(time.Second), Count: 1},
		},
		{
			name:  "a line later at the same time counts on",
			start: logPos{Time: t0, Count: 1},
			lines: []string{stamp(0, "a"), stamp(0, "b")},
			want:  []string{"b\n"},
			pos:   logPos{Time: t0, Count: 2},
		},
		{
			name:  "once past the resume point a clock stepping back loses nothing",
			start: logPos{Time: t0, Count: 1},
			lines: []string{stamp(0, "a"), stamp(time.Second, "b"), stamp(-time.Hour, "c")},
			want:  []string{"b\n", "c\n"},
			pos:   logPos{Time: t0.Add(-time.Hour), Count: 1},
		},
		{
			name:  "a line without a timestamp is kept whole",
			lines: []string{"no stamp here\n", "unterminated"},
			want:  []string{"no stamp here\n", "unterminated\n"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := dedup{start: tc.start, pos: tc.start}
			var got []string
			for _, l := range tc.lines {
				if text, ok := d.next([]byte(l)); ok {
					got = append(got, text)
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("copied %q, want %q", got, tc.want)
			}
			if !d.pos.Time.Equal(tc.pos.Time) || d.pos.Count != tc.pos.Count {
				t.Errorf("position %v #%d, want %v #%d", d.pos.Time, d.pos.Count, tc.pos.Time, tc.pos.Count)
			}
		})
	}
}

func TestReadLogLine(t *testing.T) {
	long := strings.Repeat("x", maxLogLine+100<<10)
	r := bufio.NewReaderSize(strings.NewReader("short\n"+long+"\nafter\nfragment"), 64<<10)
	var got []string
	for {
		line, err := readLogLine(r)
		if len(line) > 0 {
			got = append(got, string(line))
		}
		if err != nil {
			break
		}
	}
	want := []string{"short\n", long[:maxLogLine] + "\n", "after\n", "fragment"}
	if len(got) != len(want) {
		t.Fatalf("read %d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: %d bytes %.20q…, want %d bytes %.20q…", i, len(got[i]), got[i], len(want[i]), want[i])
		}
	}
}

// logWorld is a log collector and a pod log follower over one runtime,
// with their directories, so a test can stop and start them as a
// restart of skiff does.
type logWorld struct {
	t         *testing.T
	dir       string
	collector *logs.Collector
	pods      *PodLogs
	stop      func()
}

func startLogWorld(t *testing.T, rt *Runtime, dir string) *logWorld {
	t.Helper()
	c, err := logs.NewCollector(logs.Options{Dir: filepath.Join(dir, "logs"), PollInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { c.Run(ctx) })
	pl, err := rt.FollowLogs(LogOptions{Dir: filepath.Join(dir, "pods"), Sink: c, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	w := &logWorld{t: t, dir: dir, collector: c, pods: pl}
	var once sync.Once
	w.stop = func() {
		once.Do(func() {
			pl.Close()
			cancel()
			wg.Wait()
		})
	}
	t.Cleanup(w.stop)
	return w
}

// lines reads the app's whole collected log as "instance: text".
func (w *logWorld) lines(app string) []string {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []string
	err := w.collector.Read(ctx, app, logs.Query{}, func(l logs.Line) error {
		out = append(out, l.Instance+": "+l.Text)
		return nil
	})
	if err != nil {
		w.t.Fatalf("read logs of %s: %v", app, err)
	}
	return out
}

// awaitLines waits until the app's collected log, per instance, is want.
func (w *logWorld) awaitLines(app string, want map[string][]string) {
	w.t.Helper()
	kubetest.Await(w.t, 30*time.Second, "the pods' lines in the app's log", func() error {
		got := map[string][]string{}
		for _, l := range w.lines(app) {
			id, _, _ := strings.Cut(l, ": ")
			got[id] = append(got[id], l)
		}
		for id, lines := range want {
			var full []string
			for _, l := range lines {
				full = append(full, id+": "+l)
			}
			if !slices.Equal(got[id], full) {
				return fmt.Errorf("instance %s has %q, want %q", id, got[id], full)
			}
		}
		if len(got) != len(want) {
			return fmt.Errorf("lines of instances %v, want those of %d", slices.Sorted(func(yield func(string) bool) {
				for id := range got {
					if !yield(id) {
						return
					}
				}
			}), len(want))
		}
		return nil
	})
}

// What a pod's container writes reaches the app's log under the pod's
// name, through kube-apiserver's pods/log served by kwok; a follower sees
// a line written later; after skiff restarts, lines written meanwhile
// (some stamped with the very instant of the last line copied) arrive
// once each; and a deleted pod's raw file is collected and removed.
func TestPodLogsReachTheAppLog(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	set := e.running("talk", 1, 2)
	a, b := set.Instances[0].ID, set.Instances[1].ID
	logA, logB := e.c.ServePodLog(t, e.ns, a), e.c.ServePodLog(t, e.ns, b)
	t0 := time.Now().UTC().Truncate(time.Second).Add(123456789)
	logA.Write(t, t0, "a one", "a two")
	logB.Write(t, t0, "b one")

	dir := t.TempDir()
	w := startLogWorld(t, e.rt, dir)
	want := map[string][]string{a: {"a one", "a two"}, b: {"b one"}}
	w.awaitLines("talk", want)

	// Follow, as skiff logs -f does: a line written now arrives.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	followed := make(chan logs.Line, 16)
	go w.collector.Read(ctx, "talk", logs.Query{Follow: true, Instance: a, Tail: 1}, func(l logs.Line) error {
		followed <- l
		return nil
	})
	if l := <-followed; l.Text != "a two" {
		t.Fatalf("follow began with %q, want the last line, a two", l.Text)
	}
	logA.Write(t, t0, "a three")
	select {
	case l := <-followed:
		if l.Text != "a three" || l.Instance != a || l.Release != 1 || l.App != "talk" {
			t.Errorf("followed %+v, want a three of %s, release 1", l, a)
		}
	case <-ctx.Done():
		t.Fatal("a line written to the pod's log never reached the follower")
	}
	want[a] = append(want[a], "a three")
	w.awaitLines("talk", want)

	// skiff stops: the runtime, the follower and the collector. The pods
	// write on, some lines at the instant of the last one copied.
	w.stop()
	e.rt.Close()
	logA.Write(t, t0, "a four")
	logA.Write(t, t0.Add(time.Second), "a five")
	logB.Write(t, t0.Add(2*time.Second), "b two")
	want[a] = append(want[a], "a four", "a five")
	want[b] = append(want[b], "b two")

	// This time the connections to the API server can be cut.
	cut := &cutter{}
	cfg := rest.CopyConfig(e.c.Config)
	cfg.Dial = cut.dial
	client, err := clientset.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rt, err := New(Options{Client: client, Namespace: e.ns, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := rt.Start(e.ctx()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rt.Close)
	w = startLogWorld(t, rt, dir)
	w.awaitLines("talk", want)

	// The connections break, as when the API server restarts: the
	// streams follow again from where they were, and a line stamped with
	// the instant of the last one copied arrives once.
	dialed := cut.cutAll()
	logB.Write(t, t0.Add(2*time.Second), "b three")
	want[b] = append(want[b], "b three")
	w.awaitLines("talk", want)
	if cut.dials() <= dialed {
		t.Error("no new connection to the API server after cutting them all")
	}

	// b is deleted: its log is collected to the end and its raw file goes.
	if err := e.c.Client.CoreV1().Pods(e.ns).Delete(e.ctx(), b, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	raw := filepath.Join(dir, "pods", b+rawLogSuffix)
	kubetest.Await(t, 30*time.Second, "deleted pod's raw log removed", func() error {
		if _, err := os.Stat(raw); err == nil {
			return fmt.Errorf("%s still exists", raw)
		}
		if slices.Contains(w.collector.Tracked(), b) {
			return fmt.Errorf("collector still tracks %s", b)
		}
		return nil
	})
	if _, err := os.Stat(filepath.Join(dir, "pods", b+posSuffix)); !os.IsNotExist(err) {
		t.Errorf("deleted pod's position file: %v, want it removed", err)
	}
	got := w.lines("talk")
	for _, text := range want[b] {
		if !slices.Contains(got, b+": "+text) {
			t.Errorf("line %q of deleted pod %s lost from the app's log", text, b)
		}
	}
}

// cutter dials the API server and cuts every connection it made on
// demand, as a network failure or a restart of the API server does.
type cutter struct {
	mu     sync.Mutex
	open   []net.Conn
	dialed int
}

func (c *cutter) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.open = append(c.open, conn)
	c.dialed++
	return conn, nil
}

// cutAll closes every connection and returns how many were dialed.
func (c *cutter) cutAll() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, conn := range c.open {
		conn.Close()
	}
	c.open = nil
	return c.dialed
}

func (c *cutter) dials() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dialed
}
