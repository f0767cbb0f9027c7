// Package store is skiff's embedded state: apps, their releases and hosts,
// the event log and a few node settings, in one SQLite file.
//
// Why SQLite (through modernc.org/sqlite, so no cgo): the whole state is one
// file an admin can copy; a deploy touches an app, its releases, its hosts
// and the event log in one transaction, so a crash never leaves half a
// deploy; WAL lets the API read while controllers write; `VACUUM INTO` gives
// consistent online backups later; and the audit and event queries to come
// are plain SQL instead of hand-built indexes.
//
// Every write is committed with synchronous=FULL before its method returns,
// so whatever a caller has been told is stored survives a crash of skiff or
// of the machine. The schema version lives in SQLite's user_version, and
// Open migrates older files forward.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" database/sql driver
)

var (
	// ErrNotFound: the app, release or key does not exist.
	ErrNotFound = errors.New("not found")
	// ErrHostInUse: a host is already routed to another app. The error is a
	// *HostInUseError naming both.
	ErrHostInUse = errors.New("host in use")
	// ErrConflict: the change clashes with the app's current state, e.g. a
	// deploy to an app that is being destroyed.
	ErrConflict = errors.New("conflict")
)

// HostInUseError says which app already holds a host.
type HostInUseError struct {
	Host, App string
}

func (e *HostInUseError) Error() string {
	return fmt.Sprintf("host %q is already used by app %q", e.Host, e.App)
}

// Unwrap makes errors.Is(err, ErrHostInUse) hold.
func (e *HostInUseError) Unwrap() error { return ErrHostInUse }

// conflictError carries a message meant for the user as it is, while
// errors.Is(err, ErrConflict) still holds.
type conflictError struct{ msg string }

func (e *conflictError) Error() string { return e.msg }
func (e *conflictError) Unwrap() error { return ErrConflict }

// readConns bounds the read pool: each SQLite connection carries its own
// page cache, and reads are short.
const readConns = 4

// busyTimeout is how long a connection waits for a lock held by another
// connection (a backup, or the read pool during a checkpoint) before failing.
const busyTimeout = 10 * time.Second

// Store is the embedded state of one skiff node. It is safe for concurrent
// use.
type Store struct {
	// w is the only connection that writes. One writer means transactions
	// never fight over SQLite's single write lock inside this process.
	w *sql.DB
	// r serves reads; in WAL mode they never block the writer or each other.
	r *sql.DB

	subMu sync.Mutex
	subs  map[int]chan struct{}
	subID int

	// now is the clock, replaceable in tests.
	now func() time.Time
}

// Open opens the store at path, creating the file (mode 0600: it holds token
// hashes) and its schema if missing, and migrating an older schema forward.
// The directory must exist.
func Open(path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// Create a missing file ourselves so it gets 0600; SQLite would use
	// 0644, and its -wal and -shm files copy the main file's mode. An
	// existing file is not opened here: closing any descriptor of it in this
	// process would drop SQLite's POSIX locks on it.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	switch {
	case err == nil:
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	case !errors.Is(err, fs.ErrExist):
		return nil, fmt.Errorf("open store: %w", err)
	}

	w, err := sql.Open("sqlite", dsn(abs, false))
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	w.SetMaxOpenConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &Store{w: w, subs: map[int]chan struct{}{}, now: time.Now}
	if err := s.checkWAL(); err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	if err := migrate(s.w); err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}

	r, err := sql.Open("sqlite", dsn(abs, true))
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	r.SetMaxOpenConns(readConns)
	r.SetMaxIdleConns(readConns)
	r.SetConnMaxLifetime(0)
	if err := r.Ping(); err != nil {
		w.Close()
		r.Close()
		return nil, fmt.Errorf("open store %s: read connection: %w", abs, err)
	}
	s.r = r
	return s, nil
}

// dsn builds the connection string. A file: URI (rather than a bare path)
// keeps paths holding '?' or '#' intact.
func dsn(abs string, readOnly bool) string {
	q := url.Values{}
	q.Set("_busy_timeout", fmt.Sprint(busyTimeout.Milliseconds()))
	q.Set("_journal_mode", "WAL")
	// FULL: the WAL is fsynced at every commit, so an acknowledged write
	// survives power loss, not only a crash of the process.
	q.Set("_synchronous", "FULL")
	q.Set("_foreign_keys", "1")
	if readOnly {
		q.Set("_query_only", "1")
	} else {
		// Take the write lock at BEGIN: a deferred transaction that reads
		// first and then writes cannot wait out a busy lock, it fails.
		q.Set("_txlock", "immediate")
	}
	u := url.URL{Scheme: "file", Path: abs, RawQuery: q.Encode()}
	return u.String()
}

// checkWAL makes sure the file really is in WAL mode: SQLite silently keeps
// the old journal on file systems that cannot share memory maps.
func (s *Store) checkWAL() error {
	var mode string
	if err := s.w.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal mode: %w", err)
	}
	if mode != "wal" {
		return fmt.Errorf("journal mode is %q, not wal: put the store on a local file system", mode)
	}
	return nil
}

// Close closes the store. Pending subscriptions get no more wake-ups.
func (s *Store) Close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

// tx is one write transaction. It counts the events it appends so that
// subscribers are woken only after those events are committed.
type tx struct {
	*sql.Tx
	now    time.Time
	events int
}

// write runs fn in a write transaction and commits it. step names the
// operation for error messages.
func (s *Store) write(ctx context.Context, step string, fn func(*tx) error) error {
	sqlTx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", step, err)
	}
	t := &tx{Tx: sqlTx, now: s.now().UTC()}
	if err := fn(t); err != nil {
		sqlTx.Rollback()
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("%s: commit: %w", step, err)
	}
	if t.events > 0 {
		s.notify()
	}
	return nil
}

// read runs fn in a read transaction, so that several queries see one
// snapshot.
func (s *Store) read(ctx context.Context, step string, fn func(*sql.Tx) error) error {
	sqlTx, err := s.r.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("%s: begin: %w", step, err)
	}
	defer sqlTx.Rollback()
	return fn(sqlTx)
}

// Times are stored as Unix nanoseconds; 0 stands for the zero time.
func toNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}
