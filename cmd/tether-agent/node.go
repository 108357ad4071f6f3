package main

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/tether-dev/tether/internal/agent"
	"github.com/tether-dev/tether/internal/cri"
)

// targetsFDEnv names the descriptor on which the worker tells its parent
// the PID of every target it opens (one per line), so that the parent
// can remove the worker's rules in each of their namespaces.
const targetsFDEnv = "TETHER_AGENT_TARGETS_FD"

// targetPIDs collects the PIDs the worker reports.
type targetPIDs struct {
	mu   sync.Mutex
	pids []int
}

// read records the PIDs read from r until it ends (the worker exited).
func (t *targetPIDs) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if pid, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil && pid > 0 {
			t.mu.Lock()
			t.pids = append(t.pids, pid)
			t.mu.Unlock()
		}
	}
}

func (t *targetPIDs) list() []int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]int(nil), t.pids...)
}

// targetsPipe is the worker's end of the pipe to its parent, opened once:
// an *os.File closes its descriptor when collected, and the number could
// then name another file of the worker's.
var targetsPipe = sync.OnceValue(func() *os.File {
	fd, err := strconv.Atoi(os.Getenv(targetsFDEnv))
	if err != nil || fd < 3 {
		return nil
	}
	return os.NewFile(uintptr(fd), "targets")
})

// reportTarget tells the parent about a target the worker opened.
func reportTarget(pid int) {
	if f := targetsPipe(); f != nil {
		fmt.Fprintf(f, "%d\n", pid)
	}
}

// lingers reports whether the agent outlives its last target: a node's
// agent with a linger stays that long for the next one.
func lingers(o options) bool { return o.node && o.linger > 0 }

// opener returns the Node's Open for --node: a container of this node
// (hostPID) found by its ID, served like the agent's own target; when its
// process exits, its sessions end (the agent lingers, see lingers).
func opener(node *agent.Node, newServer func(agent.Target) *agent.Server, log *slog.Logger) func(id string) (*agent.Server, error) {
	return func(id string) (*agent.Server, error) {
		pid, err := cri.FindPID("/proc", id)
		if err != nil {
			return nil, err
		}
		target, err := agent.NewProcessTarget(pid)
		if err != nil {
			return nil, err
		}
		if removed, err := agent.RemoveStaleTables(target.NetNS()); err != nil {
			log.Warn("looking for redirect rules left by a dead agent", "container", id, "err", err)
		} else if len(removed) > 0 {
			log.Warn("removed redirect rules left by a dead agent", "container", id, "tables", removed)
		}
		reportTarget(pid)
		log.Info("serving another container of this node", "container", id, "pid", pid)
		go func() {
			defer target.Close()
			if err := agent.WaitExit(pid); err != nil {
				log.Warn("cannot watch a target process; the agent will not notice its end", "container", id, "err", err)
				return
			}
			log.Warn("a target process exited; ending its sessions", "container", id, "pid", pid)
			node.Exited(id)
		}()
		return newServer(target), nil
	}
}
