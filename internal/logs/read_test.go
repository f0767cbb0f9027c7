package logs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestReadQuery(t *testing.T) {
	c := newTestCollector(t, Options{})
	start(t, c)
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.log"), filepath.Join(dir, "b.log")
	c.Track("web", 1, "web-a", a)
	c.Track("web", 2, "web-b", b)
	c.Track("other", 1, "other-1", filepath.Join(dir, "o.log"))
	appendRaw(t, filepath.Join(dir, "o.log"), "not web\n")

	appendRaw(t, a, "a1\n")
	waitLines(t, c, "web", Query{}, 1)
	appendRaw(t, b, "b1\n")
	waitLines(t, c, "web", Query{}, 2)
	cut := time.Now()
	appendRaw(t, a, "a2\n")
	waitLines(t, c, "web", Query{}, 3)
	appendRaw(t, b, "b2\n")
	waitLines(t, c, "web", Query{}, 4)

	for _, tc := range []struct {
		name string
		q    Query
		want []string
	}{
		{"everything", Query{}, []string{"a1", "b1", "a2", "b2"}},
		{"since", Query{Since: cut}, []string{"a2", "b2"}},
		{"since the future", Query{Since: time.Now().Add(time.Hour)}, nil},
		{"tail", Query{Tail: 3}, []string{"b1", "a2", "b2"}},
		{"tail longer than the log", Query{Tail: 100}, []string{"a1", "b1", "a2", "b2"}},
		{"tail and since", Query{Tail: 5, Since: cut}, []string{"a2", "b2"}},
		{"release", Query{Release: 2}, []string{"b1", "b2"}},
		{"instance", Query{Instance: "web-a"}, []string{"a1", "a2"}},
		{"tail of one instance", Query{Instance: "web-a", Tail: 1}, []string{"a2"}},
		{"no such release", Query{Release: 9}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			wantTexts(t, readAll(t, c, "web", tc.q), tc.want...)
		})
	}
}

func TestReadErrors(t *testing.T) {
	c := newTestCollector(t, Options{})
	ctx := context.Background()
	nop := func(Line) error { return nil }

	if err := c.Read(ctx, "web", Query{Tail: -1}, nop); !errors.Is(err, ErrBadQuery) {
		t.Errorf("negative tail: err = %v, want ErrBadQuery", err)
	}
	if err := c.Read(ctx, "../x", Query{}, nop); !errors.Is(err, ErrBadApp) {
		t.Errorf("bad app: err = %v, want ErrBadApp", err)
	}
	if got := readAll(t, c, "never-logged", Query{}); len(got) != 0 {
		t.Errorf("app without logs: %d lines, want none", len(got))
	}

	start(t, c)
	raw := filepath.Join(t.TempDir(), "i.log")
	c.Track("web", 1, "web-1", raw)
	appendRaw(t, raw, "x\ny\n")
	waitLines(t, c, "web", Query{}, 2)
	stopErr := errors.New("client went away")
	calls := 0
	err := c.Read(ctx, "web", Query{}, func(Line) error { calls++; return stopErr })
	if !errors.Is(err, stopErr) || calls != 1 {
		t.Errorf("fn error: err = %v after %d calls, want fn's error after 1", err, calls)
	}
}

// follow runs a following Read in the background; lines arrive on the
// returned channel, Read's result on the other once ctx ends.
func follow(t *testing.T, c *Collector, app string, q Query) (<-chan Line, <-chan error, context.CancelFunc) {
	t.Helper()
	q.Follow = true
	ctx, cancel := context.WithCancel(context.Background())
	lines := make(chan Line, 1000)
	errc := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		errc <- c.Read(ctx, app, q, func(l Line) error {
			lines <- l
			return nil
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return lines, errc, cancel
}

func expectLine(t *testing.T, lines <-chan Line, want string) {
	t.Helper()
	select {
	case l := <-lines:
		if l.Text != want {
			t.Fatalf("followed line = %q, want %q", l.Text, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for followed line %q", want)
	}
}

func TestFollow(t *testing.T) {
	c := newTestCollector(t, Options{})
	start(t, c)
	raw := filepath.Join(t.TempDir(), "i.log")
	c.Track("web", 1, "web-1", raw)
	appendRaw(t, raw, "old 1\nold 2\n")
	waitLines(t, c, "web", Query{}, 2)

	lines, errc, cancel := follow(t, c, "web", Query{Tail: 1})
	expectLine(t, lines, "old 2")
	appendRaw(t, raw, "new 1\n")
	expectLine(t, lines, "new 1")
	appendRaw(t, raw, "new 2\n")
	expectLine(t, lines, "new 2")

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Read after ctx ended = %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read did not return after ctx ended")
	}
	if len(lines) != 0 {
		t.Errorf("unexpected extra line %q", (<-lines).Text)
	}
}

// Following an app that has not logged yet gets its first lines.
func TestFollowBeforeFirstLine(t *testing.T) {
	c := newTestCollector(t, Options{})
	start(t, c)
	lines, _, _ := follow(t, c, "web", Query{Instance: "web-1"})
	raw := filepath.Join(t.TempDir(), "i.log")
	c.Track("web", 1, "web-1", raw)
	c.Track("web", 1, "web-2", raw+"2")
	appendRaw(t, raw+"2", "filtered out\n")
	appendRaw(t, raw, "first\n")
	expectLine(t, lines, "first")
}

func TestFollowAcrossRotation(t *testing.T) {
	dir := t.TempDir()
	c := newTestCollector(t, Options{Dir: dir, MaxAppBytes: 1024})
	start(t, c)
	raw := filepath.Join(t.TempDir(), "i.log")
	c.Track("web", 1, "web-1", raw)
	lines, _, _ := follow(t, c, "web", Query{})

	n := 0
	for range 20 {
		batch := ""
		for range 5 {
			batch += lineN(n) + "\n"
			n++
		}
		appendRaw(t, raw, batch)
		for i := n - 5; i < n; i++ {
			expectLine(t, lines, lineN(i))
		}
	}
	segs, err := listSegments(filepath.Join(dir, "web"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no rotation happened (segments %v, err %v): the test proves nothing", segs, err)
	}
}

// A follower woken late, after several rotations, reads every segment
// written since in order; when its file was already removed it carries on
// with what is kept.
func TestCatchUpAfterSeveralRotations(t *testing.T) {
	for _, tc := range []struct {
		name      string
		rotations int
		wantAll   bool
	}{
		{"segments still kept", 2, true},
		{"own segment removed", keepSegments + 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCollector(t, Options{MaxAppBytes: 1})
			a := c.app("web")
			n := 0
			appendN := func() {
				if err := a.append([]Line{{Time: time.Now(), App: "web", Release: 1, Instance: "i", Text: lineN(n)}}); err != nil {
					t.Fatal(err)
				}
				n++
			}
			appendN() // rotated at once: MaxAppBytes is 1
			s, err := openSnapshot(a, Query{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.close()
			var got []string
			emit := func(l Line) error { got = append(got, l.Text); return nil }
			if err := s.drainAll(context.Background(), emit); err != nil {
				t.Fatal(err)
			}
			for range tc.rotations {
				appendN()
			}
			if err := s.catchUp(a, emit); err != nil {
				t.Fatal(err)
			}
			if len(got) == 0 || got[len(got)-1] != lineN(n-1) {
				t.Fatalf("followed %q, want it to end with %q", got, lineN(n-1))
			}
			for i := 1; i < len(got); i++ {
				if got[i] <= got[i-1] {
					t.Fatalf("followed %q: out of order or repeated", got)
				}
			}
			if tc.wantAll && len(got) != n {
				t.Fatalf("followed %q, want all %d lines", got, n)
			}
		})
	}
}

func TestDeleteApp(t *testing.T) {
	dir := t.TempDir()
	c := newTestCollector(t, Options{Dir: dir})
	start(t, c)
	raw := filepath.Join(t.TempDir(), "i.log")
	c.Track("web", 1, "web-1", raw)
	appendRaw(t, raw, "before\n")
	waitLines(t, c, "web", Query{}, 1)
	lines, errc, _ := follow(t, c, "web", Query{})
	expectLine(t, lines, "before")

	if err := c.DeleteApp("web"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("follower ended with %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follower did not end when the app's logs were deleted")
	}
	if _, err := os.Stat(filepath.Join(dir, "web")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("app log dir after DeleteApp: %v, want it gone", err)
	}
	if got := readAll(t, c, "web", Query{}); len(got) != 0 {
		t.Errorf("read %q after DeleteApp, want nothing", texts(got))
	}
	// An instance still tracked starts a new log.
	appendRaw(t, raw, "after\n")
	wantTexts(t, waitLines(t, c, "web", Query{}, 1), "after")
	if err := c.DeleteApp("never-logged"); err != nil {
		t.Errorf("DeleteApp of an app without logs: %v", err)
	}
	if err := c.DeleteApp("../x"); !errors.Is(err, ErrBadApp) {
		t.Errorf("DeleteApp(../x) = %v, want ErrBadApp", err)
	}
}
