package cli

import (
	"bytes"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// commandStopGrace is how long the command may take to exit after SIGTERM
// when the session ends under it (its target pod is gone) before it is
// SIGKILLed.
const commandStopGrace = 10 * time.Second

// stopCommand stops the supervised command as a SIGTERM to tether would:
// SIGTERM to the command's process group (layer.Run starts the command in
// a group of its own), then SIGKILL to it after grace. It waits for the
// command to exist if layer.Run is still starting it, and returns as soon
// as ran is closed (layer.Run has returned).
func stopCommand(ran <-chan struct{}, grace time.Duration) {
	for {
		groups := childGroups()
		if len(groups) > 0 {
			for _, g := range groups {
				unix.Kill(-g, unix.SIGTERM)
			}
			break
		}
		select {
		case <-ran:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case <-ran:
		return
	case <-time.After(grace):
	}
	// Read again: the group's leader is not reaped before ran is closed,
	// so its pid cannot have been reused by then.
	for _, g := range childGroups() {
		unix.Kill(-g, unix.SIGKILL)
	}
}

// childGroups returns the children of this process that lead a process
// group of their own: the supervised command. (Other children, such as
// a kubeconfig's exec credential plugin, stay in tether's group.)
func childGroups() []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // it has just exited
		}
		if ppid, pgrp, ok := parseStat(stat); ok && ppid == self && pgrp == pid {
			out = append(out, pid)
		}
	}
	return out
}

// parseStat reads the parent pid and process group from the contents of
// /proc/PID/stat ("PID (COMM) STATE PPID PGRP ..."; COMM may hold spaces
// and parentheses, so the fields are counted from the last ')').
func parseStat(stat []byte) (ppid, pgrp int, ok bool) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 3 {
		return 0, 0, false
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	pgrp, err2 := strconv.Atoi(string(f[2]))
	return ppid, pgrp, err1 == nil && err2 == nil
}
