package process

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// What keeps one process app from another, when skiff runs as root:
//
//   - its own uid and gid (users.go), so another app cannot read its
//     /proc/<pid>/environ, signal or ptrace it, or open its files;
//   - its release tree owned by that uid, mode 0700 at the top, with the
//     permission bits of the upload, never widened;
//   - a private /tmp (and /var/tmp): a directory of its own bind-mounted
//     there inside a mount namespace of its own; where the kernel refuses
//     mount namespaces, $TMPDIR points to that directory instead;
//   - no new privileges (PR_SET_NO_NEW_PRIVS): a setuid program it runs
//     does not make it root.
//
// The mount and the switch of user happen in the child, between fork and
// the app's exec, by the skiff binary itself run as initName: Go's
// os/exec cannot mount in the child, and a wrapper that execs keeps the
// pid, the start time and the process group the driver records.

// initName is argv[0] of the skiff binary run as an app's init.
const initName = "skiff-app-init"

// init turns any binary that links this package (skiff, and the test
// binaries that start process instances) into the app init when run
// under initName. It returns only in every other case, and then has done
// nothing.
func init() {
	if len(os.Args) > 0 && os.Args[0] == initName {
		appInit(os.Args[1:])
	}
}

// appInit is the child's side: args are TMPDIR-SOURCE UID GID PATH ARGV...
// It never returns: it execs the app or exits 127 with the reason on
// stderr, which is the instance's log.
func appInit(args []string) {
	fail := func(format string, a ...any) {
		fmt.Fprintf(os.Stderr, "skiff: cannot start the app: "+format+"\n", a...)
		os.Exit(127)
	}
	if len(args) < 5 {
		fail("%s needs TMP UID GID PATH ARGV..., got %d arguments", initName, len(args))
	}
	tmp, path, argv := args[0], args[3], args[4:]
	uid, err1 := strconv.ParseUint(args[1], 10, 32)
	gid, err2 := strconv.ParseUint(args[2], 10, 32)
	if err1 != nil || err2 != nil || uid == 0 {
		fail("bad uid %q or gid %q", args[1], args[2])
	}
	// The namespace is new but shares the host's mounts' propagation: make
	// it private first, so the bind mounts below stay in here.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		fail("make the mount namespace private: %v", err)
	}
	// The source is held open: it may itself lie under /tmp, which the
	// first mount hides.
	src, err := unix.Open(tmp, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		fail("open the private tmp %s: %v", tmp, err)
	}
	for _, dir := range []string{"/tmp", "/var/tmp"} {
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		if err := unix.Mount("/proc/self/fd/"+strconv.Itoa(src), dir, "", unix.MS_BIND, ""); err != nil {
			fail("mount a private %s: %v", dir, err)
		}
		if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
			fail("mount a private %s: %v", dir, err)
		}
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail("set no_new_privs: %v", err)
	}
	// The syscall package's calls change every thread of the process.
	if err := syscall.Setgroups([]int{}); err != nil {
		fail("drop supplementary groups: %v", err)
	}
	if err := syscall.Setresgid(int(gid), int(gid), int(gid)); err != nil {
		fail("switch to gid %d: %v", gid, err)
	}
	if err := syscall.Setresuid(int(uid), int(uid), int(uid)); err != nil {
		fail("switch to uid %d: %v", uid, err)
	}
	unix.Close(src)
	err = syscall.Exec(path, argv, os.Environ())
	fail("exec %s: %v", path, err)
}

// canMountNamespace reports whether this process may start children in a
// mount namespace of their own, by starting one.
func canMountNamespace() error {
	cmd := exec.Command("/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNS}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("a child in a new mount namespace: %w", err)
	}
	return nil
}

// appDirs makes app's private temporary directory and hands the release
// tree at dir to uid. The tree is handed over once, while it still belongs
// to root with mode 0700 at the top, as Unpack leaves it, so the app has
// no way into it while the walk runs; every change goes through an
// os.Root, which no symlink in the tree can lead out of.
func (d *Driver) appDirs(app, dir string, uid uint32) (tmp string, err error) {
	tmp = filepath.Join(d.stateDir, "tmp", app)
	if err := os.MkdirAll(filepath.Dir(tmp), 0o711); err != nil {
		return "", fmt.Errorf("private tmp of app %s: %w", app, err)
	}
	if err := os.Mkdir(tmp, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("private tmp of app %s: %w", app, err)
	}
	if err := ownDir(tmp, uid); err != nil {
		return "", fmt.Errorf("private tmp of app %s: %w", app, err)
	}
	if err := handOver(dir, uid); err != nil {
		return "", fmt.Errorf("hand release directory %s to app %s (uid %d): %w", dir, app, uid, err)
	}
	return tmp, nil
}

// ownDir makes dir (not a symlink) belong to uid alone.
func ownDir(dir string, uid uint32) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if err := os.Lchown(dir, int(uid), int(uid)); err != nil {
		return err
	}
	return os.Chmod(dir, 0o700)
}

// handOver gives the tree at dir to uid, unless it has it already.
func handOver(dir string, uid uint32) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("not a directory")
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid == uid {
		return nil
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	if err := root.Chmod(".", 0o700); err != nil {
		return err
	}
	err = fs.WalkDir(root.FS(), ".", func(name string, _ fs.DirEntry, err error) error {
		if err != nil || name == "." {
			return err
		}
		return root.Lchown(name, int(uid), int(uid))
	})
	if err != nil {
		return err
	}
	// The top last: a tree that belongs to uid is wholly handed over.
	return root.Lchown(".", int(uid), int(uid))
}

// underTmp reports whether dir lies in /tmp or /var/tmp, which an app's
// private /tmp would hide from it: a release unpacked there (a data
// directory under /tmp) gets $TMPDIR instead.
func underTmp(dir string) bool {
	if d, err := filepath.EvalSymlinks(dir); err == nil {
		dir = d
	}
	for _, tmp := range []string{"/tmp", "/var/tmp"} {
		if dir == tmp || strings.HasPrefix(dir, tmp+"/") {
			return true
		}
	}
	return false
}

// processUID reads the real uid of pid from /proc/<pid>/status.
func processUID(pid int) (uint32, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return parseStatusUID(pid, b)
}
