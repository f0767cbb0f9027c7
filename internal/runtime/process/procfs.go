package process

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of times in /proc/<pid>/stat. The kernel
// reports those in USER_HZ whatever its internal HZ, and USER_HZ is 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// procStat is what the driver reads from /proc/<pid>/stat.
type procStat struct {
	pid   int
	state byte
	ppid  int
	pgrp  int
	// utime and stime are CPU time in clock ticks.
	utime, stime uint64
	// startTicks is the start time in clock ticks since boot: with the pid
	// it names one process for the whole life of the machine.
	startTicks uint64
	// rssPages is the resident set in pages.
	rssPages int64
}

func (s procStat) zombie() bool { return s.state == 'Z' || s.state == 'X' }

// readStat reads /proc/<pid>/stat. A process that does not exist yields an
// error matching os.ErrNotExist.
func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	return parseStat(pid, b)
}

// parseStat parses the text of /proc/<pid>/stat. The command name (field
// 2) may hold spaces and parentheses, so fields are counted from the last
// ')'.
func parseStat(pid int, b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 > len(b) {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %d fields, want at least 24", pid, len(f)+2)
	}
	var errs []error
	num := func(n int) uint64 {
		v, err := strconv.ParseUint(f[n-3], 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("field %d: %w", n, err))
		}
		return v
	}
	inum := func(n int) int64 {
		v, err := strconv.ParseInt(f[n-3], 10, 64)
		if err != nil {
			errs = append(errs, fmt.Errorf("field %d: %w", n, err))
		}
		return v
	}
	s := procStat{
		pid:        pid,
		state:      f[0][0],
		ppid:       int(inum(4)),
		pgrp:       int(inum(5)),
		utime:      num(14),
		stime:      num(15),
		startTicks: num(22),
		rssPages:   inum(24),
	}
	if err := errors.Join(errs...); err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return s, nil
}

// readEnviron reads a process's initial environment.
func readEnviron(pid int) (map[string]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return nil, err
	}
	env := make(map[string]string)
	for kv := range bytes.SplitSeq(b, []byte{0}) {
		k, v, ok := bytes.Cut(kv, []byte{'='})
		if ok && len(k) > 0 {
			env[string(k)] = string(v)
		}
	}
	return env, nil
}

// listPIDs lists the numeric entries of /proc.
func listPIDs() ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	pids := make([]int, 0, len(ents))
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

var (
	bootOnce sync.Once
	bootAt   time.Time
	bootErr  error
)

// bootTime is when the machine booted, from btime in /proc/stat. It is read
// once: the kernel derives btime from the wall clock, so it would move with
// every clock step, while start ticks do not.
func bootTime() (time.Time, error) {
	bootOnce.Do(func() {
		b, err := os.ReadFile("/proc/stat")
		if err != nil {
			bootErr = fmt.Errorf("read boot time: %w", err)
			return
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "btime "); ok {
				sec, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					bootErr = fmt.Errorf("read boot time: btime %q: %w", v, err)
					return
				}
				bootAt = time.Unix(sec, 0)
				return
			}
		}
		bootErr = errors.New("read boot time: no btime in /proc/stat")
	})
	return bootAt, bootErr
}

// startTime turns start ticks into a wall-clock time.
func startTime(ticks uint64) (time.Time, error) {
	boot, err := bootTime()
	if err != nil {
		return time.Time{}, err
	}
	return boot.Add(time.Duration(ticks) * (time.Second / clockTicks)).UTC(), nil
}

// startRef is how a Handle's Ref records the process's start ticks, the
// exact identity the driver checks before it signals a pid, and the uid it
// runs as. The supervisor adopts after a restart only a process whose pid
// and Ref equal what it recorded when it started it.
func startRef(ticks uint64, uid uint32) string {
	return "start:" + strconv.FormatUint(ticks, 10) + ",uid:" + strconv.FormatUint(uint64(uid), 10)
}

// refTicks reads start ticks back from a Handle's Ref.
func refTicks(ref string) (uint64, bool) {
	v, ok := strings.CutPrefix(ref, "start:")
	if !ok {
		return 0, false
	}
	v, _, _ = strings.Cut(v, ",")
	n, err := strconv.ParseUint(v, 10, 64)
	return n, err == nil
}

// parseStatusUID takes the real uid from the text of /proc/<pid>/status
// ("Uid:\treal\teffective\tsaved\tfs").
func parseStatusUID(pid int, b []byte) (uint32, error) {
	for line := range strings.SplitSeq(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "Uid:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			break
		}
		uid, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/%d/status: Uid %q: %w", pid, v, err)
		}
		return uint32(uid), nil
	}
	return 0, fmt.Errorf("parse /proc/%d/status: no Uid line", pid)
}
