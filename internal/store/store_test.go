package store

import (
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// newStore opens a fresh store in a temporary directory.
func newStore(t *testing.T) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "skiff.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestPragmas checks that every connection the store opens, the writer and
// each one of the read pool, runs with the durability settings the package
// promises.
func TestPragmas(t *testing.T) {
	s := newStore(t)
	ctx := context.Background()

	check := func(t *testing.T, conn *sql.Conn) {
		t.Helper()
		want := map[string]string{
			"synchronous":  "2", // FULL
			"journal_mode": "wal",
			"foreign_keys": "1",
			"busy_timeout": "10000",
		}
		for pragma, w := range want {
			var got string
			if err := conn.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
				t.Fatalf("PRAGMA %s: %v", pragma, err)
			}
			if got != w {
				t.Errorf("PRAGMA %s = %q, want %q", pragma, got, w)
			}
		}
	}

	t.Run("writer", func(t *testing.T) {
		conn, err := s.w.Conn(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		check(t, conn)
	})
	t.Run("readers", func(t *testing.T) {
		// Hold every connection of the pool at once so each is a distinct one.
		var conns []*sql.Conn
		for range readConns {
			conn, err := s.r.Conn(ctx)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, conn)
		}
		for _, conn := range conns {
			check(t, conn)
			var qo string
			if err := conn.QueryRowContext(ctx, "PRAGMA query_only").Scan(&qo); err != nil {
				t.Fatal(err)
			}
			if qo != "1" {
				t.Errorf("read connection: PRAGMA query_only = %q, want 1", qo)
			}
			conn.Close()
		}
	})
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "skiff.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("store file mode = %v, want 0600", fi.Mode().Perm())
	}
}

func TestReopenKeepsDataAndVersion(t *testing.T) {
	// A '?' and a '#' in the path would cut a bare DSN short.
	path := filepath.Join(t.TempDir(), "odd ?#name.db")
	ctx := context.Background()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetMeta(ctx, "node", "n1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("store not at the path given: %v", err)
	}

	s, err = Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	if v, err := s.Meta(ctx, "node"); err != nil || v != "n1" {
		t.Errorf("Meta after reopen = %q, %v; want n1", v, err)
	}
	var version int
	if err := s.r.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version != len(migrations) {
		t.Errorf("user_version = %d, want %d", version, len(migrations))
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "skiff.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.w.Exec("PRAGMA user_version = 99"); err != nil {
		t.Fatal(err)
	}
	s.Close()

	_, err = Open(path)
	if err == nil || !strings.Contains(err.Error(), "schema version 99 is newer") {
		t.Fatalf("Open of a newer schema: err = %v, want one saying the schema is newer", err)
	}
}

func TestOpenMissingDirectory(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "missing", "skiff.db"))
	if err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
	if !strings.Contains(err.Error(), "missing") {
		t.Errorf("error %q does not name the path", err)
	}
}
