package logs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// offsetsVersion is bumped when the file's meaning changes, so an old
// binary refuses a file it would misread.
const offsetsVersion = 1

// offsetEntry is how far one instance's raw file has been collected.
type offsetEntry struct {
	App     string `json:"app"`
	Release int    `json:"release"`
	Path    string `json:"path"`
	// Offset is the first byte not yet in the app log.
	Offset int64 `json:"offset"`
	// Inode tells a raw file that was replaced from the one Offset is
	// about; 0 when unknown.
	Inode uint64 `json:"inode,omitempty"`
}

type offsetsFile struct {
	Version int                    `json:"version"`
	Files   map[string]offsetEntry `json:"files"`
}

// loadOffsets reads the persisted offsets; a missing file is an empty map.
func loadOffsets(path string) (map[string]offsetEntry, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]offsetEntry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read offsets %s: %w", path, err)
	}
	var f offsetsFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("read offsets %s: %w (remove the file to collect raw logs again from their start; lines may then appear twice)", path, err)
	}
	if f.Version != offsetsVersion {
		return nil, fmt.Errorf("read offsets %s: version %d, want %d (remove the file to collect raw logs again from their start)", path, f.Version, offsetsVersion)
	}
	if f.Files == nil {
		f.Files = map[string]offsetEntry{}
	}
	return f.Files, nil
}

// saveOffsets replaces the offsets file atomically: a crash leaves either
// the old or the new file, never a torn one.
func saveOffsets(path string, files map[string]offsetEntry) error {
	b, err := json.Marshal(offsetsFile{Version: offsetsVersion, Files: files})
	if err != nil {
		return fmt.Errorf("encode offsets: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".offsets-*.tmp")
	if err != nil {
		return fmt.Errorf("write offsets: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write offsets: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync offsets: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write offsets: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("replace offsets: %w", err)
	}
	return syncDir(dir)
}

// syncDir makes a rename or a new file in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync dir %s: %w", dir, err)
	}
	return nil
}
