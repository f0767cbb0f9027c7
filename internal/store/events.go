package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Event is one entry of the event log: something that happened to an app
// or the node, for users (`skiff events`) and for the audit trail.
type Event struct {
	// ID orders events; it is assigned by the store and never reused.
	ID int64
	// Time is when it happened; the store fills it in when zero.
	Time time.Time
	// App is the app it concerns ("" for the node itself).
	App string
	// Release is the release it concerns (0 for none).
	Release int
	// Kind is dotted, e.g. "release.created", "instance.started",
	// "instance.crashed".
	Kind    string
	Message string
	// Data holds optional extra figures, stored as JSON: numbers come back
	// as float64.
	Data map[string]any
}

// EventQuery selects events. Zero fields do not filter.
type EventQuery struct {
	App     string
	Release int
	// After returns only events with a larger ID: pass the last ID seen to
	// page or follow.
	After int64
	// Limit caps how many events come back; 0 means no cap.
	Limit int
}

// AddEvent appends an event and returns it with its ID and Time. Any ID the
// caller set is ignored.
func (s *Store) AddEvent(ctx context.Context, e Event) (Event, error) {
	var out Event
	err := s.write(ctx, "add event", func(t *tx) error {
		var err error
		out, err = t.addEvent(ctx, e)
		return err
	})
	return out, err
}

// addEvent appends e inside the transaction; subscribers are woken once the
// transaction commits.
func (t *tx) addEvent(ctx context.Context, e Event) (Event, error) {
	if e.Kind == "" {
		return Event{}, errors.New("add event: kind is empty")
	}
	if e.Time.IsZero() {
		e.Time = t.now
	} else {
		e.Time = e.Time.UTC()
	}
	var data sql.NullString
	if len(e.Data) > 0 {
		b, err := json.Marshal(e.Data)
		if err != nil {
			return Event{}, fmt.Errorf("add event %s: encode data: %w", e.Kind, err)
		}
		data = sql.NullString{String: string(b), Valid: true}
	}
	err := t.QueryRowContext(ctx,
		`INSERT INTO events (time, app, release, kind, message, data) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		toNanos(e.Time), e.App, e.Release, e.Kind, e.Message, data).Scan(&e.ID)
	if err != nil {
		return Event{}, fmt.Errorf("add event %s: %w", e.Kind, err)
	}
	// Hand back what a later read returns: time at the stored precision.
	e.Time = fromNanos(toNanos(e.Time))
	t.events++
	return e, nil
}

// Events returns the events q selects, ascending by ID.
func (s *Store) Events(ctx context.Context, q EventQuery) ([]Event, error) {
	var where []string
	var args []any
	if q.App != "" {
		where = append(where, "app = ?")
		args = append(args, q.App)
	}
	if q.Release != 0 {
		where = append(where, "release = ?")
		args = append(args, q.Release)
	}
	if q.After != 0 {
		where = append(where, "id > ?")
		args = append(args, q.After)
	}
	query := `SELECT id, time, app, release, kind, message, data FROM events`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY id"
	if q.Limit > 0 {
		query += " LIMIT ?"
		args = append(args, q.Limit)
	}

	var events []Event
	err := s.read(ctx, "list events", func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return fmt.Errorf("list events: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var e Event
			var at int64
			var data sql.NullString
			if err := rows.Scan(&e.ID, &at, &e.App, &e.Release, &e.Kind, &e.Message, &data); err != nil {
				return fmt.Errorf("list events: %w", err)
			}
			e.Time = fromNanos(at)
			if data.Valid {
				if err := json.Unmarshal([]byte(data.String), &e.Data); err != nil {
					return fmt.Errorf("list events: decode data of event %d: %w", e.ID, err)
				}
			}
			events = append(events, e)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("list events: %w", err)
		}
		return nil
	})
	return events, err
}

// Subscribe returns a channel that receives a value after events are
// committed, and a cancel func that ends the subscription and closes the
// channel. Wake-ups are coalesced (buffer of one, never blocking the
// writer): on each, read Events with After set to the last ID seen.
// In-process only.
func (s *Store) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	s.subMu.Lock()
	id := s.subID
	s.subID++
	s.subs[id] = ch
	s.subMu.Unlock()
	return ch, func() {
		s.subMu.Lock()
		defer s.subMu.Unlock()
		if _, ok := s.subs[id]; ok {
			delete(s.subs, id)
			close(ch)
		}
	}
}

func (s *Store) notify() {
	s.subMu.Lock()
	defer s.subMu.Unlock()
	for _, ch := range s.subs {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already waiting; it covers this one too
		}
	}
}
