package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Meta returns a node setting (node id, admin token hash, …), or an error
// wrapping ErrNotFound.
func (s *Store) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.r.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("meta %q: %w", key, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("read meta %q: %w", key, err)
	}
	return v, nil
}

// SetMeta stores a node setting, replacing any earlier value.
func (s *Store) SetMeta(ctx context.Context, key, value string) error {
	if key == "" {
		return errors.New("set meta: key is empty")
	}
	return s.write(ctx, "set meta", func(t *tx) error {
		if _, err := t.ExecContext(ctx,
			`INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`,
			key, value); err != nil {
			return fmt.Errorf("set meta %q: %w", key, err)
		}
		return nil
	})
}
