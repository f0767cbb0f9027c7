package store

import (
	"context"
	"database/sql"
	"fmt"
)

// PromoteAll is the Promoted value of a release the user promoted to the
// end of its rollout at once.
const PromoteAll = 1 << 20

// SetStep records that release n of app is at rollout step from now on
// and appends a "release.step" event with message and data. A release no
// longer pending is left alone.
func (s *Store) SetStep(ctx context.Context, app string, n, step int, message string, data map[string]any) error {
	return s.write(ctx, "set rollout step", func(t *tx) error {
		res, err := t.ExecContext(ctx,
			`UPDATE releases SET step = ?, step_at = ? WHERE app = ? AND number = ? AND status = ?`,
			step, toNanos(t.now), app, n, StatusPending)
		if err != nil {
			return fmt.Errorf("set step of release %d of app %q: %w", n, app, err)
		}
		if k, _ := res.RowsAffected(); k == 0 {
			return nil
		}
		_, err = t.addEvent(ctx, Event{App: app, Release: n, Kind: "release.step", Message: message, Data: data})
		return err
	})
}

// Promote lets the app's rollout in progress go past its current step
// (a pause, a manual gate, a blue-green switch), or with all to the end at
// once. It returns the release; an app with no rollout in progress is an
// ErrConflict.
func (s *Store) Promote(ctx context.Context, app string, all bool) (Release, error) {
	var rel Release
	err := s.write(ctx, "promote", func(t *tx) error {
		a, err := getApp(ctx, t, app)
		if err != nil {
			return err
		}
		rel, err = pendingTarget(ctx, t, a, "promote")
		if err != nil {
			return err
		}
		rel.Promoted = rel.Step
		msg := fmt.Sprintf("release %d promoted past its current step", rel.Number)
		if all {
			rel.Promoted = PromoteAll
			msg = fmt.Sprintf("release %d promoted to all traffic", rel.Number)
		}
		if _, err := t.ExecContext(ctx, `UPDATE releases SET promoted = ? WHERE app = ? AND number = ?`,
			rel.Promoted, app, rel.Number); err != nil {
			return fmt.Errorf("promote release %d of app %q: %w", rel.Number, app, err)
		}
		_, err = t.addEvent(ctx, Event{App: app, Release: rel.Number, Kind: "release.promoted", Message: msg})
		return err
	})
	return rel, err
}

// Abort ends the app's rollout in progress as failed with message, so
// the stable release takes all traffic back. It returns the release; an
// app with no rollout in progress is an ErrConflict.
func (s *Store) Abort(ctx context.Context, app, message string) (Release, error) {
	var rel Release
	err := s.read(ctx, "abort", func(tx *sql.Tx) error {
		a, err := getApp(ctx, tx, app)
		if err != nil {
			return err
		}
		rel, err = pendingTarget(ctx, tx, a, "abort")
		return err
	})
	if err != nil {
		return Release{}, err
	}
	// FinishRelease leaves a release that stopped pending meanwhile
	// alone; then there was nothing left to abort.
	if err := s.FinishRelease(ctx, app, rel.Number, StatusFailed, message); err != nil {
		return Release{}, err
	}
	return s.Release(ctx, app, rel.Number)
}

// pendingTarget returns the app's target release if its rollout is in
// progress, or an ErrConflict saying there is nothing to do.
func pendingTarget(ctx context.Context, q querier, a App, verb string) (Release, error) {
	if a.Target == 0 {
		return Release{}, &conflictError{msg: fmt.Sprintf("app %q has no release to %s", a.Name, verb)}
	}
	rel, err := getRelease(ctx, q, a.Name, a.Target)
	if err != nil {
		return Release{}, err
	}
	if rel.Status != StatusPending {
		return Release{}, &conflictError{msg: fmt.Sprintf("app %q has no rollout in progress to %s: release %d is %s", a.Name, verb, rel.Number, rel.Status)}
	}
	return rel, nil
}
