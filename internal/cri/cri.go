// Package cri finds a container's main process on the node: the process
// whose cgroup names the container ID (the /proc/*/cgroup scan that works
// for every CRI runtime with hostPID), so the agent can enter its
// namespaces.
package cri

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ParseContainerID splits "containerd://abc..." (a pod status
// containerID) into runtime and ID; a bare ID is accepted.
func ParseContainerID(s string) (runtime, id string, err error) {
	runtime, id, ok := strings.Cut(s, "://")
	if !ok {
		runtime, id = "", s
	}
	if len(id) < 12 || strings.Trim(id, "0123456789abcdef") != "" {
		return "", "", fmt.Errorf("container ID %q: want RUNTIME://HEXID as in the pod's status", s)
	}
	return runtime, id, nil
}

// FindPID returns the PID (as seen in procRoot, normally /proc) of the
// container's init process: among the processes whose cgroup mentions the
// container ID, the one whose parent's does not.
func FindPID(procRoot, containerID string) (int, error) {
	_, id, err := ParseContainerID(containerID)
	if err != nil {
		return 0, err
	}
	entries, err := os.ReadDir(procRoot)
	if err != nil {
		return 0, fmt.Errorf("listing %s: %w", procRoot, err)
	}
	inContainer := map[int]bool{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(procRoot, e.Name(), "cgroup"))
		if err != nil {
			continue // gone, or not ours to read
		}
		if strings.Contains(string(b), id) {
			inContainer[pid] = true
		}
	}
	if len(inContainer) == 0 {
		return 0, fmt.Errorf("no process of container %s is visible in %s: the agent needs hostPID and must run on the target's node", shortID(id), procRoot)
	}
	best := 0
	for pid := range inContainer {
		if inContainer[ppidOf(procRoot, pid)] {
			continue // a child inside the container
		}
		if best == 0 || pid < best {
			best = pid
		}
	}
	if best == 0 {
		return 0, fmt.Errorf("container %s: could not tell its init process", shortID(id))
	}
	return best, nil
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func ppidOf(procRoot string, pid int) int {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0
	}
	p, _ := strconv.Atoi(f[1])
	return p
}
