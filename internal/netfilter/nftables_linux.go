package netfilter

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Nftables is the netlink nftables backend. Its table (inet family) has a
// prerouting chain (connections from outside the namespace) and an output
// chain (the namespace's own processes, e.g. a sidecar calling
// localhost:PORT); the output rules skip the agent's marked sockets.
type Nftables struct {
	ns    *os.File
	table string

	mu             sync.Mutex
	ports          map[uint16]uint16
	made           bool
	transparentErr error
}

// NewNftables prepares a redirector for the network namespace at nsPath
// (for example /proc/PID/ns/net). The table is created on the first
// Redirect.
func NewNftables(nsPath, table string) (*Nftables, error) {
	ns, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", nsPath, err)
	}
	return &Nftables{ns: ns, table: table, ports: map[uint16]uint16{}}, nil
}

func (n *Nftables) conn() (*nftables.Conn, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(n.ns.Fd())))
	if err != nil {
		return nil, fmt.Errorf("netlink to nftables: %w", err)
	}
	return c, nil
}

// Redirect adds or updates the rule for port.
func (n *Nftables) Redirect(port, toPort uint16) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	old, had := n.ports[port]
	n.ports[port] = toPort
	if err := n.sync(); err != nil {
		if had {
			n.ports[port] = old
		} else {
			delete(n.ports, port)
		}
		return err
	}
	return nil
}

// Unredirect removes the rule for port.
func (n *Nftables) Unredirect(port uint16) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.ports[port]; !ok {
		return nil
	}
	delete(n.ports, port)
	return n.sync()
}

// Close deletes the table (and with it every rule).
func (n *Nftables) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	defer n.ns.Close()
	n.ports = map[uint16]uint16{}
	if !n.made {
		return nil
	}
	c, err := n.conn()
	if err != nil {
		return err
	}
	c.DelTable(&nftables.Table{Name: n.table, Family: nftables.TableFamilyINet})
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("deleting nftables table %s: %w", n.table, err)
	}
	n.made = false
	return cleanupTransparent(n.ns.Name())
}

// cleanupTransparent removes the policy routing when no tether table is
// left in the namespace.
func cleanupTransparent(nsPath string) error {
	ns, err := os.Open(nsPath)
	if err != nil {
		return nil // the namespace is gone, and its routes with it
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		return err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return err
	}
	for _, t := range tables {
		if strings.HasPrefix(t.Name, TablePrefix) {
			return nil // another agent's table still needs it
		}
	}
	return DisableTransparent(nsPath)
}

// sync rewrites both chains from n.ports in one atomic netlink batch.
func (n *Nftables) sync() error {
	c, err := n.conn()
	if err != nil {
		return err
	}
	tbl := c.AddTable(&nftables.Table{Name: n.table, Family: nftables.TableFamilyINet})
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	out := c.AddChain(&nftables.Chain{Name: "output", Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	// Replies of the app to the agent's transparent sockets (passthrough
	// connections that keep the client's address) must come back to the
	// agent: the connections it opens are marked in conntrack, and packets
	// of marked connections get the fwmark that policy routing sends to lo.
	reply := c.AddChain(&nftables.Chain{Name: "reply", Table: tbl, Type: nftables.ChainTypeRoute,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityMangle})
	c.FlushChain(pre)
	c.FlushChain(out)
	c.FlushChain(reply)
	mark := binaryutil.NativeEndian.PutUint32(TransparentMark)
	c.AddRule(&nftables.Rule{Table: tbl, Chain: reply, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: mark},
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1, SourceRegister: true},
	}})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: reply, Exprs: []expr.Any{
		&expr.Ct{Key: expr.CtKeyMARK, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: mark},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1, SourceRegister: true},
	}})
	ports := make([]uint16, 0, len(n.ports))
	for p := range n.ports {
		ports = append(ports, p)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	for _, p := range ports {
		c.AddRule(&nftables.Rule{Table: tbl, Chain: pre, Exprs: redirectExprs(p, n.ports[p], false)})
		c.AddRule(&nftables.Rule{Table: tbl, Chain: out, Exprs: redirectExprs(p, n.ports[p], true)})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("installing redirect rules in table %s: %w (the agent needs CAP_NET_ADMIN in the target's network namespace and a kernel with nf_tables)", n.table, err)
	}
	if !n.made {
		if err := EnableTransparent(n.ns.Name()); err != nil {
			n.transparentErr = err
		}
	}
	n.made = true
	return nil
}

// TransparentErr reports why passthrough connections cannot keep the
// client's address (nil when they can).
func (n *Nftables) TransparentErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.transparentErr
}

// redirectExprs is: meta l4proto tcp tcp dport PORT [meta mark != AgentMark
// meta mark != TransparentMark] redirect to :TO
func redirectExprs(port, to uint16, exemptMarked bool) []expr.Any {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
	}
	if exemptMarked {
		e = append(e,
			&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(AgentMark)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(TransparentMark)},
		)
	}
	return append(e,
		&expr.Immediate{Register: 1, Data: binaryutil.BigEndian.PutUint16(to)},
		&expr.Redir{RegisterProtoMin: 1},
	)
}

// RemoveTables deletes the tether tables in the namespace at nsPath for
// which remove(name) is true, and returns their names.
func RemoveTables(nsPath string, remove func(name string) bool) ([]string, error) {
	ns, err := os.Open(nsPath)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(ns.Fd())))
	if err != nil {
		return nil, err
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("listing nftables tables: %w", err)
	}
	var removed []string
	for _, t := range tables {
		if remove(t.Name) {
			c.DelTable(t)
			removed = append(removed, t.Name)
		}
	}
	if len(removed) == 0 {
		return nil, nil
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("deleting tables %v: %w", removed, err)
	}
	return removed, cleanupTransparent(nsPath)
}
