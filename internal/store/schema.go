package store

import (
	"database/sql"
	"fmt"
)

// migrations bring the schema from version i to i+1 (user_version i+1 once
// migrations[i] ran). Append new ones; never edit one that has shipped.
var migrations = []string{
	// 1: apps, releases, hosts, events, meta.
	`
CREATE TABLE apps (
	name       TEXT PRIMARY KEY,
	replicas   INTEGER NOT NULL CHECK (replicas >= 0),
	target     INTEGER NOT NULL DEFAULT 0,
	stable     INTEGER NOT NULL DEFAULT 0,
	deleting   INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);
CREATE TABLE releases (
	app         TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
	number      INTEGER NOT NULL CHECK (number > 0),
	spec        BLOB NOT NULL,
	spec_file   TEXT NOT NULL,
	artifact    TEXT NOT NULL DEFAULT '',
	replicas    INTEGER,
	status      TEXT NOT NULL CHECK (status IN ('pending', 'complete', 'failed', 'superseded')),
	message     TEXT NOT NULL DEFAULT '',
	rollback_of INTEGER NOT NULL DEFAULT 0,
	created_at  INTEGER NOT NULL,
	finished_at INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (app, number)
);
CREATE INDEX releases_artifact ON releases(artifact);
-- Host names are case-insensitive (DNS), so uniqueness is too.
CREATE TABLE hosts (
	host TEXT PRIMARY KEY COLLATE NOCASE,
	app  TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
	pos  INTEGER NOT NULL
);
CREATE INDEX hosts_app ON hosts(app, pos);
-- AUTOINCREMENT: an ID is never reused, even once old events are pruned,
-- so "events after ID" cursors stay valid.
CREATE TABLE events (
	id      INTEGER PRIMARY KEY AUTOINCREMENT,
	time    INTEGER NOT NULL,
	app     TEXT NOT NULL DEFAULT '',
	release INTEGER NOT NULL DEFAULT 0,
	kind    TEXT NOT NULL,
	message TEXT NOT NULL DEFAULT '',
	data    TEXT
);
CREATE INDEX events_app ON events(app, release, id);
-- The last release number given per app name; kept when an app is purged.
CREATE TABLE release_numbers (
	app  TEXT PRIMARY KEY,
	last INTEGER NOT NULL
);
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
`,
	// 2: TCP ports the edge forwards, claimed per app like hosts. sni is ''
	// for a whole port, or one TLS server name on a port shared by
	// passthrough; server names are case-insensitive like hosts.
	`
CREATE TABLE tcp_ports (
	port   INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
	sni    TEXT NOT NULL COLLATE NOCASE,
	app    TEXT NOT NULL REFERENCES apps(name) ON DELETE CASCADE,
	target INTEGER NOT NULL DEFAULT 0,
	srv    TEXT NOT NULL DEFAULT '',
	pos    INTEGER NOT NULL,
	PRIMARY KEY (port, sni)
);
CREATE INDEX tcp_ports_app ON tcp_ports(app, pos);
`,
	// 3: the container image a release runs, resolved once (built or
	// looked up) and pinned by ID, so a rollback runs the same bits even
	// if a tag moved. NULL until resolved and for process apps.
	`
ALTER TABLE releases ADD COLUMN image TEXT;
`,
	// 4: where a release's rollout stands. strategy overrides the spec's
	// for this deploy ('' keeps it); step is the canary step in effect
	// (or 1 once a blue-green release took traffic) and step_at when its
	// weights took effect (0 before); promoted is the step the user
	// promoted past with skiff promote (-1 none).
	`
ALTER TABLE releases ADD COLUMN strategy TEXT NOT NULL DEFAULT '';
ALTER TABLE releases ADD COLUMN step INTEGER NOT NULL DEFAULT 0;
ALTER TABLE releases ADD COLUMN step_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE releases ADD COLUMN promoted INTEGER NOT NULL DEFAULT -1;
`,
}

// migrate brings the database to the newest schema version, one transaction per step so
// a failed step leaves the file at the previous version.
func migrate(db *sql.DB) error {
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if v > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this skiff understands (%d): run a newer skiff, or restore a backup", v, len(migrations))
	}
	for ; v < len(migrations); v++ {
		tx, err := db.Begin()
		if err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
		if _, err := tx.Exec(migrations[v]); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
		// user_version lives in the file header and is transactional, so
		// the version moves with the schema change or not at all.
		if _, err := tx.Exec(fmt.Sprintf("PRAGMA user_version = %d", v+1)); err != nil {
			tx.Rollback()
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	return nil
}
