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
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Nftables is the netlink nftables backend, with two tables (inet
// family). The rules table (RulesTable) has the redirect rules: a
// prerouting chain (connections from outside the namespace) and an output
// chain (the namespace's own processes, e.g. a sidecar calling
// localhost:PORT) whose rules skip the agent's marked sockets. The main
// table keeps what the connections already redirected need until they
// are gone: a NAT chain (with one, the kernel translates their packets)
// and the reply routing of transparent passthroughs.
//
// Each table is owned by a netlink socket of the agent (NFT_TABLE_F_OWNER,
// Linux 5.12+): when the agent process dies in any way (SIGKILL, the OOM
// killer killing its whole container), the kernel deletes both and the
// target's traffic goes straight to the app again, in this order: the
// rules first, before the agent's listener closes (see rulesConn), the
// main table last, after every connection (see holdLast). On older
// kernels the tables are ordinary ones, removed by the agent's parent
// process or by the next agent as stale.
type Nftables struct {
	ns    *os.File
	table string

	mu             sync.Mutex
	c              *nftables.Conn // lasting: its socket owns the table
	nl             *netlink.Conn  // that socket
	rc             *nftables.Conn // lasting: its socket owns the rules table
	rnl            *netlink.Conn  // that socket, on a high descriptor (rulesConn)
	ports          map[uint16]uint16
	made, owned    bool
	transparentErr error
	inFlight       [2]int // the socket pair holding the owner socket (holdLast)
}

// holdLast makes the table's owner socket the last file the kernel
// releases when the agent dies (SIGKILL, OOM): then its connections' last
// packets (the FIN or reset of each) still get the table's address
// translation, and their clients see them end. Were the table gone first,
// those packets would leave untranslated, from the agent's own port, and
// the clients would wait for an answer that never comes. At exit the
// kernel releases a process's files in descending order of descriptor, so
// no descriptor number is safe (a connection can always get a lower one).
// Instead the socket is also kept in flight: sent over a socket pair of
// the agent's own and never received. That reference goes only when the
// pair is released, after which the socket's release comes in a later
// round than every file the process had open.
func (n *Nftables) holdLast() {
	rc, err := n.nl.SyscallConn()
	if err != nil {
		return
	}
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return
	}
	var serr error
	rc.Control(func(fd uintptr) {
		serr = unix.Sendmsg(pair[0], []byte{0}, unix.UnixRights(int(fd)), nil, 0)
	})
	if serr != nil {
		unix.Close(pair[0])
		unix.Close(pair[1])
		return
	}
	n.inFlight = pair
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

// conn returns the lasting netlink connection, opening it the first time.
func (n *Nftables) conn() (*nftables.Conn, error) {
	if n.c != nil {
		return n.c, nil
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(n.ns.Fd())), nftables.AsLasting(),
		nftables.WithSockOptions(func(nl *netlink.Conn) error { n.nl = nl; return nil }))
	if err != nil {
		return nil, fmt.Errorf("netlink to nftables: %w", err)
	}
	n.c = c
	return c, nil
}

// rulesFD is the descriptor the rules table's owner socket gets (at most
// the descriptor limit), above any the agent's connections use: at exit
// the kernel releases a process's files in descending order of
// descriptor, so the rules go before the listener and the connections.
// Connections opened until then wait in the listener's queue and die
// with it (in flight at the agent's death); those opened after reach the
// app. With the rules released after the listener, those opened in
// between would be refused. (An agent with more than rulesFD descriptors
// open would have the ones above released first.)
const rulesFD = 8192

// rulesConn returns the lasting netlink connection that owns the rules
// table, opening it the first time on descriptor rulesFD: every lower one
// is taken for the moment (by copies of one /dev/null descriptor), so the
// socket gets the lowest free one.
func (n *Nftables) rulesConn() (*nftables.Conn, error) {
	if n.rc != nil {
		return n.rc, nil
	}
	target := uint64(rulesFD)
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur-1 < target {
		target = lim.Cur - 1
	}
	var fill []int
	if null, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0); err == nil {
		fill = append(fill, null)
		for uint64(fill[len(fill)-1]) < target-1 {
			fd, err := unix.FcntlInt(uintptr(null), unix.F_DUPFD_CLOEXEC, 0)
			if err != nil {
				break
			}
			fill = append(fill, fd)
			if uint64(fd) >= target-1 {
				break
			}
		}
	}
	c, err := nftables.New(nftables.WithNetNSFd(int(n.ns.Fd())), nftables.AsLasting(),
		nftables.WithSockOptions(func(nl *netlink.Conn) error { n.rnl = nl; return nil }))
	for _, fd := range fill {
		unix.Close(fd)
	}
	if err != nil {
		return nil, fmt.Errorf("netlink to nftables: %w", err)
	}
	n.rc = c
	return c, nil
}

// nftTableFOwner is NFT_TABLE_F_OWNER: the table belongs to the netlink
// socket that created it and goes away with it.
const nftTableFOwner = 0x2

// owned reports whether a listed table has an owner. google/nftables
// reads the (big-endian) flags attribute in native byte order.
func owned(t *nftables.Table) bool {
	flags := binaryutil.BigEndian.Uint32(binaryutil.NativeEndian.PutUint32(t.Flags))
	return flags&nftTableFOwner != 0
}

// createOwned creates the table name owned by the netlink socket nl.
// google/nftables always sends table flags 0, so this one message is
// built here, in the same batch format.
func createOwned(nl *netlink.Conn, name string) error {
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: append([]byte(name), 0)},
		{Type: unix.NFTA_TABLE_FLAGS, Data: binaryutil.BigEndian.PutUint32(nftTableFOwner)},
	})
	if err != nil {
		return err
	}
	nfgen := func(family uint8, resID uint16) []byte {
		return append([]byte{family, unix.NFNETLINK_V0}, binaryutil.BigEndian.PutUint16(resID)...)
	}
	msgs := []netlink.Message{
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: netlink.Request},
			Data: nfgen(0, unix.NFNL_SUBSYS_NFTABLES)},
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE),
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create},
			Data: append(nfgen(unix.NFPROTO_INET, 0), attrs...)},
		{Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: netlink.Request},
			Data: nfgen(0, unix.NFNL_SUBSYS_NFTABLES)},
	}
	if _, err := nl.SendMessages(msgs); err != nil {
		return err
	}
	for {
		reply, err := nl.Receive()
		if err != nil {
			return err
		}
		for _, m := range reply {
			if m.Header.Type == netlink.Error {
				return nil // the acknowledgement (errors come back as err)
			}
		}
	}
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
	defer func() {
		if n.rc != nil {
			n.rc.CloseLasting()
			n.rc, n.rnl = nil, nil
		}
		if n.c != nil {
			n.c.CloseLasting()
			n.c, n.nl = nil, nil
		}
		if n.inFlight != [2]int{} {
			unix.Close(n.inFlight[0])
			unix.Close(n.inFlight[1])
			n.inFlight = [2]int{}
		}
	}()
	if !n.made {
		return nil
	}
	// The rules first: no new connection is redirected while the main
	// table goes.
	for _, t := range []struct {
		name string
		conn func() (*nftables.Conn, error)
	}{{RulesTable(n.table), n.rulesConn}, {n.table, n.conn}} {
		c, err := t.conn()
		if err != nil {
			return err
		}
		c.DelTable(&nftables.Table{Name: t.name, Family: nftables.TableFamilyINet})
		if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("deleting nftables table %s: %w", t.name, err)
		}
	}
	n.made, n.owned = false, false
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

// sync rewrites the rules table's chains from n.ports in one atomic
// netlink batch, creating both tables the first time.
func (n *Nftables) sync() error {
	if !n.made {
		if err := n.create(); err != nil {
			return err
		}
	}
	rc, err := n.rulesConn()
	if err != nil {
		return err
	}
	rules := &nftables.Table{Name: RulesTable(n.table), Family: nftables.TableFamilyINet}
	if !n.owned {
		// Adding an owned table again would try to drop its owner flag.
		rc.AddTable(rules)
	}
	pre := rc.AddChain(&nftables.Chain{Name: "prerouting", Table: rules, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	out := rc.AddChain(&nftables.Chain{Name: "output", Table: rules, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	rc.FlushChain(pre)
	rc.FlushChain(out)
	ports := make([]uint16, 0, len(n.ports))
	for p := range n.ports {
		ports = append(ports, p)
	}
	sort.Slice(ports, func(i, j int) bool { return ports[i] < ports[j] })
	for _, p := range ports {
		rc.AddRule(&nftables.Rule{Table: rules, Chain: pre, Exprs: redirectExprs(p, n.ports[p], false)})
		rc.AddRule(&nftables.Rule{Table: rules, Chain: out, Exprs: redirectExprs(p, n.ports[p], true)})
	}
	if err := rc.Flush(); err != nil {
		return fmt.Errorf("installing redirect rules in table %s: %w (the agent needs CAP_NET_ADMIN in the target's network namespace and a kernel with nf_tables)", rules.Name, err)
	}
	if !n.made {
		if err := EnableTransparent(n.ns.Name()); err != nil {
			n.transparentErr = err
		}
	}
	n.made = true
	return nil
}

// create makes both tables, owned where the kernel can (see Nftables),
// and the main table's chains.
func (n *Nftables) create() error {
	c, err := n.conn()
	if err != nil {
		return err
	}
	rc, err := n.rulesConn()
	if err != nil {
		return err
	}
	switch err := createOwned(n.nl, n.table); {
	case err == nil:
		n.owned = true
		n.holdLast()
		if err := createOwned(n.rnl, RulesTable(n.table)); err != nil {
			return fmt.Errorf("creating nftables table %s: %w", RulesTable(n.table), err)
		}
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP):
		// A kernel before 5.12: ordinary tables, created below.
	default:
		return fmt.Errorf("creating nftables table %s: %w (the agent needs CAP_NET_ADMIN in the target's network namespace and a kernel with nf_tables)", n.table, err)
	}
	tbl := &nftables.Table{Name: n.table, Family: nftables.TableFamilyINet}
	if !n.owned {
		c.AddTable(tbl)
		rc.AddTable(&nftables.Table{Name: RulesTable(n.table), Family: nftables.TableFamilyINet})
		if err := rc.Flush(); err != nil {
			return fmt.Errorf("creating nftables table %s: %w", RulesTable(n.table), err)
		}
	}
	// A NAT chain of its own: while the namespace has one, the kernel
	// keeps translating the redirected connections, the rules table gone
	// or not.
	c.AddChain(&nftables.Chain{Name: "keep", Table: tbl, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	// Replies of the app to the agent's transparent sockets (passthrough
	// connections that keep the client's address) must come back to the
	// agent: the connections it opens are marked in conntrack, and packets
	// of marked connections get the fwmark that policy routing sends to lo.
	reply := c.AddChain(&nftables.Chain{Name: "reply", Table: tbl, Type: nftables.ChainTypeRoute,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityMangle})
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
	if err := c.Flush(); err != nil {
		return fmt.Errorf("creating nftables table %s: %w (the agent needs CAP_NET_ADMIN in the target's network namespace and a kernel with nf_tables)", n.table, err)
	}
	return nil
}

// TransparentErr reports why passthrough connections cannot keep the
// client's address (nil when they can).
func (n *Nftables) TransparentErr() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.transparentErr
}

// redirectExprs is: meta l4proto tcp tcp dport PORT tcp flags & (syn|ack)
// == syn [meta mark != AgentMark meta mark != TransparentMark] redirect to
// :TO
//
// Only a connection's opening SYN is redirected. A namespace has no
// connection tracking until a rule needs it (this table's), so the
// connections open before it get a conntrack entry only at their next
// packet, picked up in mid-stream: were that packet (a request of a
// keep-alive client) redirected, it would meet no connection at the
// agent's port and the client a reset. Unredirected, such connections go
// on to the app until they are handed over (see the agent's takeover).
func redirectExprs(port, to uint16, exemptMarked bool) []expr.Any {
	e := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: tcpFlagsOffset, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpSYN | tcpACK}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{tcpSYN}},
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

// The TCP header's flags byte and two of its bits.
const (
	tcpFlagsOffset = 13
	tcpSYN         = 0x02
	tcpACK         = 0x10
)

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
		// An owned table's owner is alive (the kernel deletes the table
		// with it), and only the owner may delete it.
		if !owned(t) && remove(t.Name) {
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
