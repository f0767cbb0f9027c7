package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// App is the desired state of one app.
type App struct {
	Name string
	// Replicas is the desired instance count. It survives deploys unless a
	// spec sets replicas.
	Replicas int
	// Target is the release the app should run (0 = none).
	Target int
	// Stable is the last release whose deploy completed (0 = none).
	Stable int
	// Hosts are every host routed to the app, its default host included,
	// in the order the last release gave them.
	Hosts []string
	// TCP are the edge ports forwarded to the app, in the order the last
	// release gave them.
	TCP []TCPPort
	// Deleting: destroy was requested; the controller stops everything and
	// then calls PurgeApp.
	Deleting  bool
	CreatedAt time.Time
	UpdatedAt time.Time
}

const appColumns = `name, replicas, target, stable, deleting, created_at, updated_at`

type rowScanner interface{ Scan(...any) error }

func scanApp(row rowScanner) (App, error) {
	var a App
	var created, updated int64
	err := row.Scan(&a.Name, &a.Replicas, &a.Target, &a.Stable, &a.Deleting, &created, &updated)
	a.CreatedAt, a.UpdatedAt = fromNanos(created), fromNanos(updated)
	return a, err
}

// App returns one app, or an error wrapping ErrNotFound.
func (s *Store) App(ctx context.Context, name string) (App, error) {
	var a App
	err := s.read(ctx, "read app", func(tx *sql.Tx) error {
		var err error
		a, err = getApp(ctx, tx, name)
		if err != nil {
			return err
		}
		a.Hosts, err = appHosts(ctx, tx, name)
		if err != nil {
			return err
		}
		a.TCP, err = appTCP(ctx, tx, name)
		return err
	})
	return a, err
}

// Apps returns every app, sorted by name.
func (s *Store) Apps(ctx context.Context) ([]App, error) {
	var apps []App
	err := s.read(ctx, "list apps", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+appColumns+` FROM apps ORDER BY name`)
		if err != nil {
			return fmt.Errorf("list apps: %w", err)
		}
		defer rows.Close()
		index := map[string]int{}
		for rows.Next() {
			a, err := scanApp(rows)
			if err != nil {
				return fmt.Errorf("list apps: %w", err)
			}
			index[a.Name] = len(apps)
			apps = append(apps, a)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list apps: %w", err)
		}
		rows.Close()

		hrows, err := tx.QueryContext(ctx, `SELECT app, host FROM hosts ORDER BY app, pos`)
		if err != nil {
			return fmt.Errorf("list hosts: %w", err)
		}
		defer hrows.Close()
		for hrows.Next() {
			var app, host string
			if err := hrows.Scan(&app, &host); err != nil {
				return fmt.Errorf("list hosts: %w", err)
			}
			if i, ok := index[app]; ok {
				apps[i].Hosts = append(apps[i].Hosts, host)
			}
		}
		if err := hrows.Err(); err != nil {
			return fmt.Errorf("list hosts: %w", err)
		}
		return allTCP(ctx, tx, apps, index)
	})
	return apps, err
}

// querier is what both *sql.Tx and *tx offer for reads.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func getApp(ctx context.Context, q querier, name string) (App, error) {
	a, err := scanApp(q.QueryRowContext(ctx, `SELECT `+appColumns+` FROM apps WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return App{}, fmt.Errorf("app %q: %w", name, ErrNotFound)
	}
	if err != nil {
		return App{}, fmt.Errorf("read app %q: %w", name, err)
	}
	return a, nil
}

func appHosts(ctx context.Context, q querier, name string) ([]string, error) {
	rows, err := q.QueryContext(ctx, `SELECT host FROM hosts WHERE app = ? ORDER BY pos`, name)
	if err != nil {
		return nil, fmt.Errorf("read hosts of app %q: %w", name, err)
	}
	defer rows.Close()
	var hosts []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, fmt.Errorf("read hosts of app %q: %w", name, err)
		}
		hosts = append(hosts, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read hosts of app %q: %w", name, err)
	}
	return hosts, nil
}

// Scale sets the app's desired replica count and records an "app.scaled"
// event. Scaling an app that is being destroyed is a conflict.
func (s *Store) Scale(ctx context.Context, app string, n int) error {
	if n < 0 {
		return fmt.Errorf("scale app %q: replicas must be 0 or more, not %d", app, n)
	}
	return s.write(ctx, "scale app", func(t *tx) error {
		a, err := getApp(ctx, t, app)
		if err != nil {
			return err
		}
		if a.Deleting {
			return destroyingError(app)
		}
		if _, err := t.ExecContext(ctx, `UPDATE apps SET replicas = ?, updated_at = ? WHERE name = ?`,
			n, toNanos(t.now), app); err != nil {
			return fmt.Errorf("scale app %q: %w", app, err)
		}
		_, err = t.addEvent(ctx, Event{
			App:     app,
			Kind:    "app.scaled",
			Message: fmt.Sprintf("scaled from %d to %d replicas", a.Replicas, n),
			Data:    map[string]any{"from": a.Replicas, "to": n},
		})
		return err
	})
}

// MarkDeleting records that the app is to be destroyed: from now on it takes
// no new releases, and the controller stops its instances and then calls
// PurgeApp. Marking an app twice is no error and records one event.
func (s *Store) MarkDeleting(ctx context.Context, app string) error {
	return s.write(ctx, "mark app deleting", func(t *tx) error {
		a, err := getApp(ctx, t, app)
		if err != nil {
			return err
		}
		if a.Deleting {
			return nil
		}
		if _, err := t.ExecContext(ctx, `UPDATE apps SET deleting = 1, updated_at = ? WHERE name = ?`,
			toNanos(t.now), app); err != nil {
			return fmt.Errorf("mark app %q deleting: %w", app, err)
		}
		_, err = t.addEvent(ctx, Event{App: app, Kind: "app.destroying", Message: "destroy requested"})
		return err
	})
}

// PurgeApp deletes an app that is being destroyed, with its releases and
// hosts; its events stay for the record. It returns the artifact digests
// that no remaining release of any app uses, for the caller to remove.
// Purging an app that was not marked with MarkDeleting is a conflict, so a
// stray call cannot wipe a live app.
func (s *Store) PurgeApp(ctx context.Context, app string) ([]string, error) {
	var unused []string
	err := s.write(ctx, "purge app", func(t *tx) error {
		a, err := getApp(ctx, t, app)
		if err != nil {
			return err
		}
		if !a.Deleting {
			return &conflictError{fmt.Sprintf("app %q is not being destroyed; mark it deleting first", app)}
		}
		rows, err := t.QueryContext(ctx, `
			SELECT DISTINCT artifact FROM releases
			WHERE app = ? AND artifact != ''
			  AND artifact NOT IN (SELECT artifact FROM releases WHERE app != ?)
			ORDER BY artifact`, app, app)
		if err != nil {
			return fmt.Errorf("purge app %q: find unused artifacts: %w", app, err)
		}
		for rows.Next() {
			var d string
			if err := rows.Scan(&d); err != nil {
				rows.Close()
				return fmt.Errorf("purge app %q: find unused artifacts: %w", app, err)
			}
			unused = append(unused, d)
		}
		if err := rows.Close(); err != nil {
			return fmt.Errorf("purge app %q: find unused artifacts: %w", app, err)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("purge app %q: find unused artifacts: %w", app, err)
		}
		// Releases and hosts go with the app (ON DELETE CASCADE).
		if _, err := t.ExecContext(ctx, `DELETE FROM apps WHERE name = ?`, app); err != nil {
			return fmt.Errorf("purge app %q: %w", app, err)
		}
		_, err = t.addEvent(ctx, Event{App: app, Kind: "app.destroyed", Message: "app destroyed"})
		return err
	})
	if err != nil {
		return nil, err
	}
	return unused, nil
}

func destroyingError(app string) error {
	return &conflictError{fmt.Sprintf("app %q is being destroyed; try again when `skiff apps` no longer lists it", app)}
}
