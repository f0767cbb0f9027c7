package store

import (
	"context"
	"errors"
	"testing"
)

func TestSetReleaseImage(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()
	rel := release(t, s, "web")
	if rel.Image != "" {
		t.Fatalf("a new release has image %q, want none", rel.Image)
	}
	got, err := s.SetReleaseImage(ctx, "web", rel.Number, "sha256:aaa")
	if err != nil || got != "sha256:aaa" {
		t.Fatalf("SetReleaseImage = %q, %v; want sha256:aaa", got, err)
	}
	// The first image stays: a release's bits never change.
	got, err = s.SetReleaseImage(ctx, "web", rel.Number, "sha256:bbb")
	if err != nil || got != "sha256:aaa" {
		t.Fatalf("second SetReleaseImage = %q, %v; want the first, sha256:aaa", got, err)
	}
	for _, name := range []string{"Release", "Releases"} {
		var img string
		if name == "Release" {
			r, err := s.Release(ctx, "web", rel.Number)
			if err != nil {
				t.Fatal(err)
			}
			img = r.Image
		} else {
			rs, err := s.Releases(ctx, "web")
			if err != nil || len(rs) != 1 {
				t.Fatalf("Releases = %v, %v", rs, err)
			}
			img = rs[0].Image
		}
		if img != "sha256:aaa" {
			t.Errorf("%s reports image %q, want sha256:aaa", name, img)
		}
	}
	if _, err := s.SetReleaseImage(ctx, "web", 99, "sha256:ccc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("image of a missing release: %v, want ErrNotFound", err)
	}
	if _, err := s.SetReleaseImage(ctx, "web", rel.Number, ""); err == nil {
		t.Errorf("an empty image was accepted")
	}
}
