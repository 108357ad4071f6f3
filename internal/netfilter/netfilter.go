// Package netfilter installs the agent's incoming-traffic redirect rules
// in a target's network namespace: one table owned by one agent, one rule
// per subscribed port, the agent's own (marked) traffic exempt. The
// nftables backend talks netlink directly (no nft binary); Fake records
// calls for tests.
package netfilter

import (
	"fmt"
	"strconv"
	"strings"
)

// Redirector redirects TCP connections for subscribed ports to the agent.
type Redirector interface {
	// Redirect sends new TCP connections to port (from outside and from the
	// target's own loopback) to toPort, except connections carrying the
	// agent's mark. Idempotent.
	Redirect(port, toPort uint16) error
	// Unredirect removes the rule for port. Idempotent.
	Unredirect(port uint16) error
	// Close removes every rule and the table.
	Close() error
}

// TablePrefix starts the name of every table tether creates.
const TablePrefix = "tether-"

// AgentMark marks the agent's own sockets (SO_MARK) so the redirect rules
// let them through to the real app.
const AgentMark = 0x7e7e0001

// TransparentMark marks the agent's transparent passthrough sockets (those
// bound to a client's address): the redirect rules let them through too,
// and policy routing brings the app's replies on their connections back
// to the agent. The agent's other sockets (outgoing traffic of sessions)
// must not get that routing, hence a mark of their own.
const TransparentMark = 0x7e7e0002

// TableName names the table of the agent process pid started at
// startTime (clock ticks since boot, from /proc/PID/stat): two agents never
// share a name, and a table whose owner is gone can be recognised.
func TableName(pid int, startTime uint64) string {
	return fmt.Sprintf("%s%d-%d", TablePrefix, pid, startTime)
}

// rulesSuffix ends the name of a table's rules table.
const rulesSuffix = "-rules"

// RulesTable names the table that holds the redirect rules of table (see
// Nftables).
func RulesTable(table string) string { return table + rulesSuffix }

// ParseTableName extracts the owner from a TableName (or its RulesTable).
// ok is false for names tether did not create in this format.
func ParseTableName(name string) (pid int, startTime uint64, ok bool) {
	rest, found := strings.CutPrefix(name, TablePrefix)
	if !found {
		return 0, 0, false
	}
	rest = strings.TrimSuffix(rest, rulesSuffix)
	p, s, found := strings.Cut(rest, "-")
	if !found {
		return 0, 0, false
	}
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 {
		return 0, 0, false
	}
	startTime, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return pid, startTime, true
}

// Stale reports whether a tether table belongs to no live agent: its name
// does not parse, or its owner process is gone (or is another process now).
// startTimeOf returns a live process's start time, or false.
func Stale(name string, startTimeOf func(pid int) (uint64, bool)) bool {
	if !strings.HasPrefix(name, TablePrefix) {
		return false
	}
	pid, st, ok := ParseTableName(name)
	if !ok {
		return true
	}
	cur, alive := startTimeOf(pid)
	return !alive || cur != st
}
