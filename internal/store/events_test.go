package store

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestAddEvent(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	fixed := time.Date(2025, 5, 1, 12, 0, 0, 123, time.UTC)
	s.now = func() time.Time { return fixed }

	e1, err := s.AddEvent(ctx, Event{ID: 99, App: "a", Release: 2, Kind: "instance.crashed", Message: "exit 1",
		Data: map[string]any{"code": 1, "signal": "KILL"}})
	if err != nil {
		t.Fatal(err)
	}
	if e1.ID == 0 || e1.ID == 99 || !e1.Time.Equal(fixed) {
		t.Errorf("event = %+v, want an assigned ID and the store's time", e1)
	}
	given := time.Date(2024, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600))
	e2, err := s.AddEvent(ctx, Event{Kind: "node.started", Time: given})
	if err != nil {
		t.Fatal(err)
	}
	if e2.ID <= e1.ID || !e2.Time.Equal(given) {
		t.Errorf("second event = %+v, want a larger ID and the given time", e2)
	}

	got, err := s.Events(ctx, EventQuery{})
	if err != nil {
		t.Fatal(err)
	}
	want := []Event{e1, e2}
	want[0].Data = map[string]any{"code": float64(1), "signal": "KILL"} // JSON numbers
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Events =\n%+v\nwant\n%+v", got, want)
	}

	if _, err := s.AddEvent(ctx, Event{Message: "no kind"}); err == nil {
		t.Error("AddEvent without a kind succeeded")
	}
	if _, err := s.AddEvent(ctx, Event{Kind: "x", Data: map[string]any{"f": func() {}}}); err == nil {
		t.Error("AddEvent with data that is not JSON succeeded")
	}
}

func TestEventsQuery(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	// ids 1..8: app a releases 1,2 alternate, then app b, then the node.
	var ids []int64
	for i, e := range []Event{
		{App: "a", Release: 1}, {App: "a", Release: 2}, {App: "a", Release: 1}, {App: "a", Release: 2},
		{App: "b", Release: 1}, {App: "b", Release: 1}, {}, {},
	} {
		e.Kind = "test.event"
		e.Message = fmt.Sprint(i)
		added, err := s.AddEvent(ctx, e)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, added.ID)
	}
	cases := []struct {
		name string
		q    EventQuery
		want []int // indexes into ids
	}{
		{"all", EventQuery{}, []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{"by app", EventQuery{App: "a"}, []int{0, 1, 2, 3}},
		{"by app and release", EventQuery{App: "a", Release: 2}, []int{1, 3}},
		{"release across apps", EventQuery{Release: 1}, []int{0, 2, 4, 5}},
		{"after", EventQuery{After: ids[5]}, []int{6, 7}},
		{"after with app", EventQuery{App: "a", After: ids[1]}, []int{2, 3}},
		{"limit keeps the oldest", EventQuery{Limit: 3}, []int{0, 1, 2}},
		{"after and limit page on", EventQuery{After: ids[2], Limit: 2}, []int{3, 4}},
		{"after the last", EventQuery{After: ids[7]}, nil},
		{"unknown app", EventQuery{App: "zzz"}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Events(ctx, tc.q)
			if err != nil {
				t.Fatal(err)
			}
			var gotIDs, wantIDs []int64
			for _, e := range got {
				gotIDs = append(gotIDs, e.ID)
			}
			for _, i := range tc.want {
				wantIDs = append(wantIDs, ids[i])
			}
			if !reflect.DeepEqual(gotIDs, wantIDs) {
				t.Errorf("ids = %v, want %v", gotIDs, wantIDs)
			}
		})
	}
}

// woken waits (bounded) for a wake-up on ch.
func woken(ch <-chan struct{}) bool {
	select {
	case _, ok := <-ch:
		return ok
	case <-time.After(5 * time.Second):
		return false
	}
}

// pending reports whether a wake-up is already waiting. Writers notify
// before their method returns, so no waiting is needed.
func pending(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestSubscribe(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	ch, cancel := s.Subscribe()
	other, cancelOther := s.Subscribe()
	defer cancelOther()

	if pending(ch) {
		t.Fatal("a new subscription is already woken")
	}
	if _, err := s.AddEvent(ctx, Event{Kind: "x"}); err != nil {
		t.Fatal(err)
	}
	if !woken(ch) || !woken(other) {
		t.Fatal("AddEvent did not wake every subscriber")
	}

	// Wake-ups coalesce: two events, one wake-up, and the writer never blocks.
	release(t, s, "a")
	if err := s.FinishRelease(ctx, "a", 1, StatusComplete, "ok"); err != nil {
		t.Fatal(err)
	}
	if !pending(ch) {
		t.Fatal("writes with events did not wake the subscriber")
	}
	if pending(ch) {
		t.Fatal("wake-ups were not coalesced")
	}

	// A write without an event wakes no one.
	if err := s.SetMeta(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	if pending(ch) {
		t.Error("SetMeta woke the subscriber")
	}

	cancel()
	cancel() // twice is harmless
	if _, ok := <-ch; ok {
		t.Error("channel still open after cancel")
	}
	pending(other)
	if _, err := s.AddEvent(ctx, Event{Kind: "x"}); err != nil {
		t.Fatalf("AddEvent after a cancel: %v", err)
	}
	if !pending(other) {
		t.Error("cancelling one subscription silenced another")
	}
}
