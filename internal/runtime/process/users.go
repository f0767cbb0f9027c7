package process

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// App users. When skiff runs as root, every app runs as a system user of
// its own, allocated from a range of its own the way systemd's DynamicUser
// does: one uid per app, with a group of the same number, kept for the
// app's life and never given to another app afterwards, so nothing a
// destroyed app left behind is ever readable by a newer one. Another app's
// uid cannot read an app's environment or files, signal it or ptrace it.
const (
	// AppUIDBase is the first uid (and gid) given to an app: 0x70000000,
	// in the part of the uid space that systemd leaves unused, far from
	// login users, DynamicUser (61184-65519) and container ranges.
	AppUIDBase = 0x70000000
	// AppUIDCount is how many uids the range holds.
	AppUIDCount = 1 << 16
)

// IsAppUID reports whether uid lies in the range skiff gives apps.
func IsAppUID(uid uint32) bool {
	return uid >= AppUIDBase && uid < AppUIDBase+AppUIDCount
}

// usersFileName keeps the allocation in the driver's StateDir.
const usersFileName = "users.json"

// appUsers is the durable map from app name to uid.
type appUsers struct {
	path string

	mu sync.Mutex
	// uids maps an app to its uid; next is the lowest uid never given.
	uids map[string]uint32
	next uint32
}

type usersFile struct {
	Apps map[string]uint32 `json:"apps"`
	Next uint32            `json:"next"`
}

func openAppUsers(dir string) (*appUsers, error) {
	u := &appUsers{path: filepath.Join(dir, usersFileName), uids: map[string]uint32{}, next: AppUIDBase}
	b, err := os.ReadFile(u.path)
	if errors.Is(err, fs.ErrNotExist) {
		return u, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read app users: %w", err)
	}
	var f usersFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("read app users %s: %w", u.path, err)
	}
	for app, uid := range f.Apps {
		if !IsAppUID(uid) {
			return nil, fmt.Errorf("read app users %s: app %s has uid %d, outside skiff's range", u.path, app, uid)
		}
		u.uids[app] = uid
	}
	u.next = max(f.Next, AppUIDBase)
	return u, nil
}

// uid returns app's uid, allocating and recording one (durably, before it
// is used) on first use. A uid that /etc/passwd or /etc/group already
// names is skipped.
func (u *appUsers) uid(app string) (uint32, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if uid, ok := u.uids[app]; ok {
		return uid, nil
	}
	taken, err := systemIDs()
	if err != nil {
		return 0, err
	}
	uid := u.next
	for taken[uid] {
		uid++
	}
	if !IsAppUID(uid) {
		return 0, fmt.Errorf("allocate a user for app %s: all %d uids from %d are given", app, AppUIDCount, AppUIDBase)
	}
	u.uids[app] = uid
	u.next = uid + 1
	if err := u.saveLocked(); err != nil {
		delete(u.uids, app)
		u.next = uid
		return 0, err
	}
	return uid, nil
}

func (u *appUsers) saveLocked() error {
	b, err := json.MarshalIndent(usersFile{Apps: u.uids, Next: u.next}, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileSynced(u.path, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("record app users: %w", err)
	}
	return nil
}

// systemIDs are the uids and gids in skiff's range that the system's own
// account files already name.
func systemIDs() (map[uint32]bool, error) {
	ids := map[uint32]bool{}
	for _, file := range []string{"/etc/passwd", "/etc/group"} {
		f, err := os.Open(file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", file, err)
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// name:password:ID:...
			fields := strings.SplitN(sc.Text(), ":", 4)
			if len(fields) < 3 {
				continue
			}
			if id, err := strconv.ParseUint(fields[2], 10, 32); err == nil && IsAppUID(uint32(id)) {
				ids[uint32(id)] = true
			}
		}
		f.Close()
	}
	return ids, nil
}

// writeFileSynced replaces path with data through a synced temporary file.
func writeFileSynced(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
