package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/netfilter"
)

// StartTime returns a live process's start time (clock ticks after boot, field
// 22 of /proc/PID/stat), which tells a process from a later one that
// reused its PID.
func StartTime(pid int) (uint64, bool) {
	b, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	// After the command come state (field 3) ... starttime is field 22.
	if len(f) < 20 || f[0] == "Z" || f[0] == "X" {
		return 0, false // gone, or a zombie: dead for our purposes
	}
	st, err := strconv.ParseUint(f[19], 10, 64)
	return st, err == nil
}

// TableFor names the redirect table of agent process pid.
func TableFor(pid int) string {
	st, _ := StartTime(pid)
	return netfilter.TableName(pid, st)
}

// RemoveStaleTables deletes tether tables in the namespace whose agent is
// gone (rules a killed agent could not remove) and returns their names.
func RemoveStaleTables(nsPath string) ([]string, error) {
	return netfilter.RemoveTables(nsPath, func(name string) bool { return netfilter.Stale(name, StartTime) })
}

// WaitExit blocks until process pid exits (a pidfd becomes readable). It
// returns at once with an error when the process cannot be watched.
func WaitExit(pid int) error {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("watching process %d: %w", pid, err)
	}
	defer unix.Close(fd)
	for {
		_, err := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, -1)
		if err == nil {
			return nil
		}
		if err != unix.EINTR {
			return fmt.Errorf("watching process %d: %w", pid, err)
		}
	}
}
