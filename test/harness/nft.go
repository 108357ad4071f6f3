package harness

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// TetherTablePrefix starts the name of every nftables table tether's agent
// creates (the product names them "tether-<agent pid>-<agent start time>").
const TetherTablePrefix = "tether"

// StaleTableName is the table the stale-rule test creates to stand for one
// left by a dead agent; its name does not parse as a live agent's.
const StaleTableName = "tether-deadbeef"

// NFTIn runs `nft ARGS...` in the network namespace of process pid (the nft
// binary is the host's; it is only used to inspect and to simulate leftovers,
// the product talks netlink).
func NFTIn(pid int, args ...string) (string, error) {
	nft, err := lookTool("nft")
	if err != nil {
		return "", fmt.Errorf("nft not found (install nftables: sudo hack/install-deps.sh)")
	}
	nsenter, err := lookTool("nsenter")
	if err != nil {
		return "", err
	}
	argv := append([]string{"-t", strconv.Itoa(pid), "-n", "--", nft}, args...)
	out, err := exec.Command(nsenter, argv...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("nft %s in the netns of pid %d: %v: %s", strings.Join(args, " "), pid, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// NFT runs `nft ARGS...` in the pod's network namespace; it fails t on error.
func (p *Pod) NFT(t testing.TB, args ...string) string {
	t.Helper()
	out, err := NFTIn(p.PID, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Tables lists the nftables tables in the pod's network namespace as
// "FAMILY NAME" strings.
func (p *Pod) Tables() ([]string, error) {
	out, err := NFTIn(p.PID, "list", "tables")
	if err != nil {
		return nil, err
	}
	var tables []string
	for _, l := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "table "); ok {
			tables = append(tables, rest)
		}
	}
	return tables, nil
}

// TetherTables lists the pod's tables whose name starts with
// TetherTablePrefix ("FAMILY NAME").
func (p *Pod) TetherTables() ([]string, error) {
	all, err := p.Tables()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, tbl := range all {
		f := strings.Fields(tbl)
		if len(f) == 2 && strings.HasPrefix(f[1], TetherTablePrefix) {
			out = append(out, tbl)
		}
	}
	return out, nil
}

// Ruleset returns `nft list ruleset` of the pod's network namespace (or the
// error text), for logs.
func (p *Pod) Ruleset() string {
	out, err := NFTIn(p.PID, "list", "ruleset")
	if err != nil {
		return err.Error()
	}
	return out
}

// DeleteTetherTables removes every tether table from the pod's network
// namespace (cleanup after tests that leave or plant tables on purpose).
func (p *Pod) DeleteTetherTables() error {
	tables, err := p.TetherTables()
	if err != nil {
		return err
	}
	var errs []string
	for _, tbl := range tables {
		f := strings.Fields(tbl)
		if _, err := NFTIn(p.PID, "delete", "table", f[0], f[1]); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// Children returns the PIDs of the direct children of process pid: the
// union of /proc/PID/task/*/children (a child belongs to the thread that
// forked it, which in a Go program can be any thread).
func Children(pid int) ([]int, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, task.Name()))
		if err != nil {
			continue // the thread is gone
		}
		for _, f := range strings.Fields(string(b)) {
			k, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("bad children list of %d: %q", pid, b)
			}
			kids = append(kids, k)
		}
	}
	return kids, nil
}

// AddRedirectTable creates, in the pod's network namespace, an inet table
// named name with a NAT prerouting chain redirecting TCP port to toPort,
// like the rule of an agent. Tests use it to plant a leftover of a dead
// agent (toPort with nothing listening: connections are refused).
func (p *Pod) AddRedirectTable(name string, port, toPort int) error {
	steps := [][]string{
		{"add", "table", "inet", name},
		{"add", "chain", "inet", name, "prerouting", "{ type nat hook prerouting priority dstnat; policy accept; }"},
		{"add", "rule", "inet", name, "prerouting", "tcp", "dport", strconv.Itoa(port), "redirect", "to", ":" + strconv.Itoa(toPort)},
	}
	for _, s := range steps {
		if _, err := NFTIn(p.PID, s...); err != nil {
			return err
		}
	}
	return nil
}

// DeleteTable removes the inet table name from the pod's network namespace.
func (p *Pod) DeleteTable(name string) error {
	_, err := NFTIn(p.PID, "delete", "table", "inet", name)
	return err
}
