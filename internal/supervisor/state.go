package supervisor

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/skiff-sh/skiff/internal/instance"
)

// stateFileName is the supervisor's state in StateDir. It holds templates,
// env included, so it is written with mode 0600.
const stateFileName = "sets.json"

// stateVersion is the format of sets.json.
const stateVersion = 1

type setKey struct {
	app     string
	release int
}

// set is one release's instances. len(insts) is always its size.
type set struct {
	tmpl  instance.Template
	insts map[string]*inst
}

// inst is one instance slot of a set. Its fields below the line are
// guarded by Supervisor.mu.
type inst struct {
	id      string
	key     setKey
	created time.Time
	// cancel ends the run goroutine; done is closed when it has returned.
	cancel context.CancelFunc
	done   chan struct{}

	// h is the handle of the current (or last) run; zero before the
	// first start.
	h         Handle
	running   bool
	state     instance.State
	draining  bool
	restarts  int
	lastExit  *instance.Exit
	nextStart time.Time
	message   string
}

// stateFile is sets.json.
type stateFile struct {
	Version int         `json:"version"`
	Sets    []setRecord `json:"sets"`
}

type setRecord struct {
	Template instance.Template `json:"template"`
	Size     int               `json:"size"`
	// Instances are the set's instance ids; Handle is set once Start
	// returned for it.
	Instances []instanceRecord `json:"instances"`
}

type instanceRecord struct {
	ID       string    `json:"id"`
	Created  time.Time `json:"created"`
	Handle   *Handle   `json:"handle,omitempty"`
	Draining bool      `json:"draining,omitempty"`
	Restarts int       `json:"restarts,omitempty"`
}

// snapshotLocked renders the in-memory state as sets.json. Callers hold
// s.mu.
func (s *Supervisor) snapshotLocked() stateFile {
	f := stateFile{Version: stateVersion, Sets: []setRecord{}}
	for _, st := range s.sets {
		rec := setRecord{Template: st.tmpl, Size: len(st.insts), Instances: []instanceRecord{}}
		for _, in := range st.insts {
			ir := instanceRecord{ID: in.id, Created: in.created, Draining: in.draining, Restarts: in.restarts}
			if in.h.ID != "" {
				h := in.h
				ir.Handle = &h
			}
			rec.Instances = append(rec.Instances, ir)
		}
		slices.SortFunc(rec.Instances, func(a, b instanceRecord) int { return cmp.Compare(a.ID, b.ID) })
		f.Sets = append(f.Sets, rec)
	}
	slices.SortFunc(f.Sets, func(a, b setRecord) int {
		return cmp.Or(cmp.Compare(a.Template.App, b.Template.App), cmp.Compare(a.Template.Release, b.Template.Release))
	})
	return f
}

// persist writes the current state to sets.json, durably.
func (s *Supervisor) persist() error {
	s.persistMu.Lock()
	defer s.persistMu.Unlock()
	s.mu.Lock()
	snap := s.snapshotLocked()
	s.mu.Unlock()
	b, err := json.MarshalIndent(snap, "", "  ")
	if err != nil {
		return fmt.Errorf("save sets: %w", err)
	}
	if err := writeFileAtomic(s.path, append(b, '\n')); err != nil {
		return fmt.Errorf("save sets: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with data so that after a crash the file
// holds either the old or the new content, never a mix: temp file, fsync,
// rename, fsync of the directory (which makes the rename itself durable).
func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// loadState reads sets.json; a missing file is an empty state.
func loadState(path string) (stateFile, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return stateFile{Version: stateVersion}, nil
	}
	if err != nil {
		return stateFile{}, fmt.Errorf("%w: %w", ErrBadState, err)
	}
	var f stateFile
	if err := json.Unmarshal(b, &f); err != nil {
		return stateFile{}, fmt.Errorf("%w: %s: %w (move it aside to start empty; running instances are then stopped as orphans)", ErrBadState, path, err)
	}
	if f.Version != stateVersion {
		return stateFile{}, fmt.Errorf("%w: %s has version %d, this skiff reads version %d", ErrBadState, path, f.Version, stateVersion)
	}
	for i, rec := range f.Sets {
		if rec.Template.App == "" || rec.Size < 0 {
			return stateFile{}, fmt.Errorf("%w: %s: set %d has no app or a negative size", ErrBadState, path, i)
		}
	}
	return f, nil
}
