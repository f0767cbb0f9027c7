package runtimetest

import (
	"os"
	"strconv"
)

// readProcStat reads /proc/<pid>/stat.
func readProcStat(pid int) (string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	return string(b), err
}
