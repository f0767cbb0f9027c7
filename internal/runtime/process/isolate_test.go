package process

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/skiff-sh/skiff/internal/instance"
)

// requireRoot skips a test of what skiff does only as root, unless
// SKIFF_REQUIRE_INTEGRATION=1 (CI runs as root), where it fails.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("SKIFF_REQUIRE_INTEGRATION") == "1" {
		t.Fatal("apps get users of their own only when skiff runs as root; run the tests as root (SKIFF_REQUIRE_INTEGRATION=1)")
	}
	t.Skip("apps get users of their own only when skiff runs as root")
}

// TestHostileAppCannotReachAnother runs a victim app holding a secret in
// its environment, its release tree and its /tmp, and a hostile app that
// tries every way one process reaches another on one machine: it reads
// the victim's /proc entries, signals it, ptraces it (through
// /proc/<pid>/mem), reads its files, writes its release tree and looks in
// /tmp. Each attempt must fail.
func TestHostileAppCannotReachAnother(t *testing.T) {
	t.Parallel()
	requireRoot(t)
	d := newTestDriver(t, "")
	victim, err := d.Start(context.Background(), "victim-1-a", instance.Template{
		App: "victim", Release: 1, Command: []string{"./testapp"}, Dir: testApp(t),
		Env: map[string]string{"API_KEY": "victim-secret-env"},
	})
	if err != nil {
		t.Fatal(err)
	}
	awaitHTTP(t, victim.Endpoint)
	vdir := testApp(t)
	if err := os.WriteFile(filepath.Join(vdir, "secret.txt"), []byte("victim-secret-file"), 0o644); err != nil {
		t.Fatal(err)
	}
	vtmp := filepath.Join(d.stateDir, "tmp", "victim")
	if err := os.MkdirAll(vtmp, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vtmp, "victim-tmp-file"), []byte("victim-secret-tmp"), 0o644); err != nil {
		t.Fatal(err)
	}

	hdir := hostileDir(t)
	pid := strconv.Itoa(victim.PID)
	// Every line the script prints that starts with LEAK is a way in.
	script := strings.Join([]string{
		`try() { if sh -c "$2" >/dev/null 2>&1; then echo "LEAK $1"; else echo "denied $1"; fi; }`,
		`try environ "grep -q victim-secret /proc/` + pid + `/environ"`,
		`try cwd "cat /proc/` + pid + `/cwd/secret.txt"`,
		`try mem "dd if=/proc/` + pid + `/mem bs=1 count=1 skip=4194304"`,
		`try fd "ls /proc/` + pid + `/fd/"`,
		`try signal "kill -0 ` + pid + `"`,
		`try stop "kill -STOP ` + pid + `"`,
		`try read-release "cat ` + vdir + `/secret.txt"`,
		`try list-release "ls ` + vdir + `"`,
		`try write-release "touch ` + vdir + `/planted"`,
		`try read-tmp "cat ` + vtmp + `/victim-tmp-file"`,
		`try shared-tmp "ls /tmp/victim-tmp-file"`,
		`try state "ls ` + d.stateDir + `/logs"`,
		`try users "cat ` + d.stateDir + `/users.json"`,
		`echo > /tmp/hostile-mark && echo "own-tmp ok"`,
		`echo done`,
		`sleep 60`,
	}, "\n")
	hostile, err := d.Start(context.Background(), "hostile-1-a", instance.Template{
		App: "hostile", Release: 1, Command: []string{"sh", "-c", script}, Dir: hdir,
	})
	if err != nil {
		t.Fatal(err)
	}
	out := awaitLog(t, d, hostile, "done")
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(line, "LEAK") {
			t.Errorf("the hostile app got through: %s", line)
		}
	}
	if !strings.Contains(out, "own-tmp ok") {
		t.Errorf("the hostile app cannot use its own /tmp:\n%s", out)
	}
	if strings.Count(out, "denied ") != 13 {
		t.Errorf("not every attempt ran:\n%s", out)
	}
	// The victim still runs, and its /tmp does not hold what the hostile
	// app wrote to its own.
	if st, err := readStat(victim.PID); err != nil || st.state == 'T' {
		t.Errorf("victim was stopped or killed: %+v %v", st, err)
	}
	if _, err := os.Stat(filepath.Join(vtmp, "hostile-mark")); err == nil {
		t.Error("the two apps share /tmp")
	}
	if _, err := os.Stat(filepath.Join(vdir, "planted")); err == nil {
		t.Error("the hostile app wrote into the victim's release")
	}
	if _, err := os.Stat(filepath.Join(d.stateDir, "tmp", "hostile", "hostile-mark")); err != nil && d.mountNS {
		t.Errorf("the hostile app's /tmp is not its private directory: %v", err)
	}
	fi, err := os.Stat(vdir)
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("victim's release tree: %v %v, want mode 0700", fi, err)
	}
}

// TestAppUIDsAreKeptAndNeverReused: an app keeps its uid across driver
// restarts, and another app never gets it.
func TestAppUIDsAreKeptAndNeverReused(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	u, err := openAppUsers(dir)
	if err != nil {
		t.Fatal(err)
	}
	a, err := u.uid("a")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := u.uid("b")
	if a == b || !IsAppUID(a) || !IsAppUID(b) {
		t.Fatalf("uids a=%d b=%d", a, b)
	}
	u2, err := openAppUsers(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := u2.uid("a"); got != a {
		t.Errorf("after a restart app a has uid %d, had %d", got, a)
	}
	c, _ := u2.uid("c")
	if c == a || c == b {
		t.Errorf("new app c got a uid already given: %d", c)
	}
	fi, err := os.Stat(filepath.Join(dir, usersFileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("users file: %v %v, want mode 0600", fi, err)
	}
	if err := os.WriteFile(filepath.Join(dir, usersFileName), []byte(`{"apps":{"x":0},"next":1879048192}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := openAppUsers(dir); err == nil || !strings.Contains(err.Error(), "outside skiff's range") {
		t.Errorf("a users file giving an app root: %v", err)
	}
}

// hostileDir is a release directory holding nothing but what sh needs.
func hostileDir(t *testing.T) string {
	t.Helper()
	parent := "/var/lib/skiff-test"
	if err := os.MkdirAll(parent, 0o711); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp(parent, "skiff-hostile-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
