package store

import (
	"context"
	"fmt"
)

// SetReleaseImage records the container image ID release n of app runs.
// The first recorded image stays: a release's bits never change, so a
// second resolution (after a crash between resolving and recording, or a
// race) returns the image already recorded instead. It returns the image
// the release runs.
func (s *Store) SetReleaseImage(ctx context.Context, app string, n int, image string) (string, error) {
	if image == "" {
		return "", fmt.Errorf("set image of release %d of app %q: the image ID is empty", n, app)
	}
	var got string
	err := s.write(ctx, "set release image", func(t *tx) error {
		if _, err := t.ExecContext(ctx,
			`UPDATE releases SET image = ? WHERE app = ? AND number = ? AND image IS NULL`, image, app, n); err != nil {
			return fmt.Errorf("set image of release %d of app %q: %w", n, app, err)
		}
		rel, err := getRelease(ctx, t, app, n)
		if err != nil {
			return err
		}
		got = rel.Image
		return nil
	})
	return got, err
}
