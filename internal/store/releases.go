package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Release statuses.
const (
	StatusPending    = "pending"
	StatusComplete   = "complete"
	StatusFailed     = "failed"
	StatusSuperseded = "superseded"
)

// Release is one immutable, numbered revision of an app.
type Release struct {
	App string
	// Number is 1, 2, 3… per app, never reused while the app exists.
	Number int
	// Spec is the skiff.yaml text as uploaded.
	Spec []byte
	// SpecFile is its file name, for error positions.
	SpecFile string
	// Artifact is the sha256 hex digest of the artifact archive ("" if none).
	Artifact string
	// Replicas is the spec's replicas, if it set one.
	Replicas *int
	// Status is StatusPending, StatusComplete, StatusFailed or
	// StatusSuperseded.
	Status string
	// Message says why: a failure reason, "superseded by release 5",
	// "rollback of release 2".
	Message string
	// RollbackOf is the release this one copies, 0 if none.
	RollbackOf int
	CreatedAt  time.Time
	// FinishedAt is zero while the release is pending.
	FinishedAt time.Time
	// Image is the ID of the container image the release runs, once
	// resolved (SetReleaseImage); "" for process apps and before that.
	Image string
	// Strategy overrides the spec's deploy strategy for this release;
	// "" keeps the spec's.
	Strategy string
	// Step is the rollout step in effect: the canary step, or 1 once a
	// blue-green release took the traffic. StepAt is when its weights took
	// effect, zero before (SetStep).
	Step   int
	StepAt time.Time
	// Promoted is the step the user promoted past (Promote), -1 if none.
	Promoted int
}

// NewRelease is what CreateRelease needs.
type NewRelease struct {
	App      string
	SpecFile string
	Spec     []byte
	Artifact string
	// Hosts are every host of the app, its default host included; they
	// replace the app's hosts.
	Hosts []string
	// TCP are the app's forwarded ports; they replace the app's ports.
	TCP []TCPPort
	// Replicas, when set, becomes the app's desired count; nil leaves it
	// unchanged (a new app starts with 1).
	Replicas   *int
	RollbackOf int
	// Strategy overrides the spec's deploy strategy once; "" keeps it.
	Strategy string
}

const releaseColumns = `app, number, spec, spec_file, artifact, replicas, status, message, rollback_of, created_at, finished_at, image, strategy, step, step_at, promoted`

func scanRelease(row rowScanner) (Release, error) {
	var r Release
	var replicas sql.NullInt64
	var created, finished, stepAt int64
	var image sql.NullString
	err := row.Scan(&r.App, &r.Number, &r.Spec, &r.SpecFile, &r.Artifact, &replicas,
		&r.Status, &r.Message, &r.RollbackOf, &created, &finished, &image,
		&r.Strategy, &r.Step, &stepAt, &r.Promoted)
	r.Image = image.String
	r.StepAt = fromNanos(stepAt)
	if replicas.Valid {
		n := int(replicas.Int64)
		r.Replicas = &n
	}
	r.CreatedAt, r.FinishedAt = fromNanos(created), fromNanos(finished)
	return r, err
}

// CreateRelease records a new release of an app and makes it the app's
// target, all in one transaction:
//   - it creates the app if missing; an app being destroyed is a conflict;
//   - every host must be free or already the app's, else the error is a
//     *HostInUseError for the first taken host and nothing changes;
//   - every TCP port must be free or already the app's (a port shared by
//     TLS server name only for other names), else the error is a
//     *PortInUseError and nothing changes;
//   - the release is numbered one past the app's highest;
//   - any other pending release of the app becomes superseded;
//   - the app's hosts and ports are replaced, Replicas applied and Target set;
//   - a "release.created" event is appended.
func (s *Store) CreateRelease(ctx context.Context, nr NewRelease) (Release, error) {
	hosts, err := checkNewRelease(nr)
	if err != nil {
		return Release{}, err
	}
	var rel Release
	err = s.write(ctx, "create release", func(t *tx) error {
		now := toNanos(t.now)
		a, err := getApp(ctx, t, nr.App)
		switch {
		case errors.Is(err, ErrNotFound):
			replicas := 1
			if nr.Replicas != nil {
				replicas = *nr.Replicas
			}
			if _, err := t.ExecContext(ctx,
				`INSERT INTO apps (name, replicas, created_at, updated_at) VALUES (?, ?, ?, ?)`,
				nr.App, replicas, now, now); err != nil {
				return fmt.Errorf("create app %q: %w", nr.App, err)
			}
		case err != nil:
			return err
		case a.Deleting:
			return destroyingError(nr.App)
		}

		for _, h := range hosts {
			var owner string
			err := t.QueryRowContext(ctx, `SELECT app FROM hosts WHERE host = ?`, h).Scan(&owner)
			if errors.Is(err, sql.ErrNoRows) {
				continue
			}
			if err != nil {
				return fmt.Errorf("check host %q: %w", h, err)
			}
			if owner != nr.App {
				return &HostInUseError{Host: h, App: owner}
			}
		}

		if err := checkTCP(ctx, t, nr.App, nr.TCP); err != nil {
			return err
		}

		if nr.RollbackOf > 0 {
			var one int
			err := t.QueryRowContext(ctx, `SELECT 1 FROM releases WHERE app = ? AND number = ?`,
				nr.App, nr.RollbackOf).Scan(&one)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("roll back to release %d of app %q: %w", nr.RollbackOf, nr.App, ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("check release %d of app %q: %w", nr.RollbackOf, nr.App, err)
			}
		}

		// Numbers are never reused, not even by an app created again under
		// a destroyed app's name, so events naming a release stay unambiguous.
		var n int
		if err := t.QueryRowContext(ctx, `INSERT INTO release_numbers (app, last) VALUES (?, 1)
			ON CONFLICT (app) DO UPDATE SET last = last + 1 RETURNING last`,
			nr.App).Scan(&n); err != nil {
			return fmt.Errorf("number release of app %q: %w", nr.App, err)
		}

		superseded, err := supersede(ctx, t, nr.App, n)
		if err != nil {
			return err
		}

		rel = Release{
			App:        nr.App,
			Number:     n,
			Spec:       nr.Spec,
			SpecFile:   nr.SpecFile,
			Artifact:   nr.Artifact,
			Status:     StatusPending,
			RollbackOf: nr.RollbackOf,
			CreatedAt:  t.now,
			Strategy:   nr.Strategy,
			Promoted:   -1,
		}
		if nr.Replicas != nil {
			r := *nr.Replicas
			rel.Replicas = &r
		}
		if nr.RollbackOf > 0 {
			rel.Message = fmt.Sprintf("rollback of release %d", nr.RollbackOf)
		}
		var replicas sql.NullInt64
		if rel.Replicas != nil {
			replicas = sql.NullInt64{Int64: int64(*rel.Replicas), Valid: true}
		}
		spec := rel.Spec
		if spec == nil {
			spec = []byte{} // the column is NOT NULL; an empty spec is still a spec
		}
		if _, err := t.ExecContext(ctx, `INSERT INTO releases (`+releaseColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, ?, 0, 0, -1)`,
			rel.App, rel.Number, spec, rel.SpecFile, rel.Artifact, replicas,
			rel.Status, rel.Message, rel.RollbackOf, now, 0, rel.Strategy); err != nil {
			return fmt.Errorf("insert release %d of app %q: %w", n, nr.App, err)
		}

		if _, err := t.ExecContext(ctx,
			`UPDATE apps SET target = ?, replicas = COALESCE(?, replicas), updated_at = ? WHERE name = ?`,
			n, replicas, now, nr.App); err != nil {
			return fmt.Errorf("update app %q: %w", nr.App, err)
		}
		if _, err := t.ExecContext(ctx, `DELETE FROM hosts WHERE app = ?`, nr.App); err != nil {
			return fmt.Errorf("replace hosts of app %q: %w", nr.App, err)
		}
		for i, h := range hosts {
			if _, err := t.ExecContext(ctx, `INSERT INTO hosts (host, app, pos) VALUES (?, ?, ?)`,
				h, nr.App, i); err != nil {
				return fmt.Errorf("replace hosts of app %q: %w", nr.App, err)
			}
		}
		if err := replaceTCP(ctx, t, nr.App, nr.TCP); err != nil {
			return err
		}

		ev := Event{App: nr.App, Release: n, Kind: "release.created", Message: fmt.Sprintf("release %d created", n)}
		data := map[string]any{}
		if nr.RollbackOf > 0 {
			ev.Message += fmt.Sprintf(" as a rollback of release %d", nr.RollbackOf)
			data["rollback_of"] = nr.RollbackOf
		}
		if len(superseded) > 0 {
			ev.Message += "; it supersedes release " + joinInts(superseded)
			data["superseded"] = superseded
		}
		if len(data) > 0 {
			ev.Data = data
		}
		_, err = t.addEvent(ctx, ev)
		return err
	})
	if err != nil {
		return Release{}, err
	}
	return rel, nil
}

// checkNewRelease rejects input no caller should send, and returns the hosts
// without duplicates (compared case-insensitively, like the store does).
func checkNewRelease(nr NewRelease) ([]string, error) {
	if nr.App == "" {
		return nil, errors.New("create release: app name is empty")
	}
	if nr.Replicas != nil && *nr.Replicas < 0 {
		return nil, fmt.Errorf("create release of app %q: replicas must be 0 or more, not %d", nr.App, *nr.Replicas)
	}
	if nr.RollbackOf < 0 {
		return nil, fmt.Errorf("create release of app %q: rollback_of must be a release number, not %d", nr.App, nr.RollbackOf)
	}
	if nr.Artifact != "" && !isDigest(nr.Artifact) {
		return nil, fmt.Errorf("create release of app %q: artifact %q is not a sha256 hex digest", nr.App, nr.Artifact)
	}
	var hosts []string
	seen := map[string]bool{}
	for _, h := range nr.Hosts {
		if h == "" {
			return nil, fmt.Errorf("create release of app %q: empty host name", nr.App)
		}
		k := strings.ToLower(h)
		if seen[k] {
			continue
		}
		seen[k] = true
		hosts = append(hosts, h)
	}
	return hosts, nil
}

func isDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// supersede marks the app's pending releases as superseded by release n and
// returns their numbers.
func supersede(ctx context.Context, t *tx, app string, n int) ([]int, error) {
	rows, err := t.QueryContext(ctx, `
		UPDATE releases SET status = ?, message = ?, finished_at = ?
		WHERE app = ? AND status = ?
		RETURNING number`,
		StatusSuperseded, fmt.Sprintf("superseded by release %d", n), toNanos(t.now), app, StatusPending)
	if err != nil {
		return nil, fmt.Errorf("supersede pending releases of app %q: %w", app, err)
	}
	defer rows.Close()
	var numbers []int
	for rows.Next() {
		var k int
		if err := rows.Scan(&k); err != nil {
			return nil, fmt.Errorf("supersede pending releases of app %q: %w", app, err)
		}
		numbers = append(numbers, k)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("supersede pending releases of app %q: %w", app, err)
	}
	return numbers, nil
}

func joinInts(ns []int) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = fmt.Sprint(n)
	}
	return strings.Join(parts, ", ")
}

// Release returns release n of app, or an error wrapping ErrNotFound.
func (s *Store) Release(ctx context.Context, app string, n int) (Release, error) {
	var rel Release
	err := s.read(ctx, "read release", func(tx *sql.Tx) error {
		var err error
		rel, err = getRelease(ctx, tx, app, n)
		return err
	})
	return rel, err
}

func getRelease(ctx context.Context, q querier, app string, n int) (Release, error) {
	rel, err := scanRelease(q.QueryRowContext(ctx,
		`SELECT `+releaseColumns+` FROM releases WHERE app = ? AND number = ?`, app, n))
	if errors.Is(err, sql.ErrNoRows) {
		return Release{}, fmt.Errorf("release %d of app %q: %w", n, app, ErrNotFound)
	}
	if err != nil {
		return Release{}, fmt.Errorf("read release %d of app %q: %w", n, app, err)
	}
	return rel, nil
}

// Releases returns the app's releases, newest first. An app that does not
// exist is an error wrapping ErrNotFound.
func (s *Store) Releases(ctx context.Context, app string) ([]Release, error) {
	var rels []Release
	err := s.read(ctx, "list releases", func(tx *sql.Tx) error {
		if _, err := getApp(ctx, tx, app); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx,
			`SELECT `+releaseColumns+` FROM releases WHERE app = ? ORDER BY number DESC`, app)
		if err != nil {
			return fmt.Errorf("list releases of app %q: %w", app, err)
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanRelease(rows)
			if err != nil {
				return fmt.Errorf("list releases of app %q: %w", app, err)
			}
			rels = append(rels, r)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list releases of app %q: %w", app, err)
		}
		return nil
	})
	return rels, err
}

// FinishRelease ends a pending release with status StatusComplete or
// StatusFailed and a message. A complete release becomes the app's Stable
// one; a failed release that is the app's Target hands Target back to
// Stable, so the previous good release keeps serving. A release that is no
// longer pending is left alone and nil returned, so a controller may repeat
// the call. It appends a "release.complete" or "release.failed" event.
func (s *Store) FinishRelease(ctx context.Context, app string, n int, status, message string) error {
	return s.FinishReleaseWith(ctx, app, n, status, message, nil)
}

// FinishReleaseWith is FinishRelease with data for its event, such as the
// figures a failed rollout analysis saw.
func (s *Store) FinishReleaseWith(ctx context.Context, app string, n int, status, message string, data map[string]any) error {
	if status != StatusComplete && status != StatusFailed {
		return fmt.Errorf("finish release %d of app %q: status must be %q or %q, not %q",
			n, app, StatusComplete, StatusFailed, status)
	}
	return s.write(ctx, "finish release", func(t *tx) error {
		rel, err := getRelease(ctx, t, app, n)
		if err != nil {
			return err
		}
		if rel.Status != StatusPending {
			return nil
		}
		now := toNanos(t.now)
		if _, err := t.ExecContext(ctx,
			`UPDATE releases SET status = ?, message = ?, finished_at = ? WHERE app = ? AND number = ?`,
			status, message, now, app, n); err != nil {
			return fmt.Errorf("finish release %d of app %q: %w", n, app, err)
		}
		var q string
		if status == StatusComplete {
			q = `UPDATE apps SET stable = ?1, updated_at = ?2 WHERE name = ?3`
		} else {
			q = `UPDATE apps SET target = CASE WHEN target = ?1 THEN stable ELSE target END, updated_at = ?2 WHERE name = ?3`
		}
		if _, err := t.ExecContext(ctx, q, n, now, app); err != nil {
			return fmt.Errorf("finish release %d of app %q: update app: %w", n, app, err)
		}
		_, err = t.addEvent(ctx, Event{App: app, Release: n, Kind: "release." + status, Message: message, Data: data})
		return err
	})
}
