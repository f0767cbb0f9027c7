package store

import (
	"context"
	"errors"
	"testing"
)

func TestMeta(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()

	if _, err := s.Meta(ctx, "node_id"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Meta of a missing key: err = %v, want ErrNotFound", err)
	}
	for _, v := range []string{"first", "second"} {
		if err := s.SetMeta(ctx, "node_id", v); err != nil {
			t.Fatal(err)
		}
		got, err := s.Meta(ctx, "node_id")
		if err != nil || got != v {
			t.Fatalf("Meta = %q, %v; want %q", got, err, v)
		}
	}
	if err := s.SetMeta(ctx, "", "x"); err == nil {
		t.Error("SetMeta with an empty key succeeded")
	}
}
