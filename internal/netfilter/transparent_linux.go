package netfilter

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/netns"
)

// Policy routing for transparent passthrough: packets with TransparentMark look
// up transparentTable, whose default routes are local (delivered to lo):
// the app's replies to a connection the agent opened from the client's
// address come back to the agent instead of leaving for the real client.
const (
	transparentTable = 0x7e7e
	transparentPrio  = 9
)

func transparentRoutes(lo int) []*netlink.Route {
	return []*netlink.Route{
		{LinkIndex: lo, Table: transparentTable, Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST,
			Dst: &net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}},
		{LinkIndex: lo, Table: transparentTable, Type: unix.RTN_LOCAL, Scope: netlink.SCOPE_HOST,
			Dst: &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}},
	}
}

func transparentRules() []*netlink.Rule {
	var out []*netlink.Rule
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		r := netlink.NewRule()
		r.Family = fam
		r.Mark = TransparentMark
		r.Mask = ptrUint32(0xffffffff)
		r.Table = transparentTable
		r.Priority = transparentPrio
		out = append(out, r)
	}
	return out
}

func ptrUint32(v uint32) *uint32 { return &v }

func netnsDo(nsPath string, fn func() error) error { return netns.Do(nsPath, unix.CLONE_NEWNET, fn) }

func handleIn(nsPath string) (*netlink.Handle, error) {
	ns, err := vnetns.GetFromPath(nsPath)
	if err != nil {
		return nil, fmt.Errorf("opening network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns)
}

// fwmarkAccept is the sysctl that gives a listener's accepted connection
// the mark of its SYN: the app's side of a transparent passthrough
// connection then carries AgentMark from its first packet. It is a help,
// not a need: the table's reply chain re-routes every packet of a marked
// connection anyway, provided the namespace has a default route to route
// the SYN-ACK with first (pods do). Containers mount /proc/sys read-only,
// so failing to set it is fine.
const fwmarkAccept = "/proc/sys/net/ipv4/tcp_fwmark_accept"

func setSysctlIn(nsPath, path, value string) error {
	return netnsDo(nsPath, func() error { return os.WriteFile(path, []byte(value), 0o644) })
}

// EnableTransparent installs the policy routing in the namespace at nsPath.
func EnableTransparent(nsPath string) error {
	setSysctlIn(nsPath, fwmarkAccept, "1")
	h, err := handleIn(nsPath)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("finding lo: %w", err)
	}
	for _, r := range transparentRoutes(lo.Attrs().Index) {
		if err := h.RouteReplace(r); err != nil && !(r.Dst.IP.To4() == nil && errors.Is(err, syscall.EAFNOSUPPORT)) {
			return fmt.Errorf("adding the local route for transparent passthrough: %w", err)
		}
	}
	for _, r := range transparentRules() {
		if err := h.RuleAdd(r); err != nil && !errors.Is(err, syscall.EEXIST) && !(r.Family == unix.AF_INET6 && errors.Is(err, syscall.EAFNOSUPPORT)) {
			return fmt.Errorf("adding the routing rule for transparent passthrough: %w", err)
		}
	}
	return nil
}

// DisableTransparent removes the policy routing (idempotent).
func DisableTransparent(nsPath string) error {
	h, err := handleIn(nsPath)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	defer h.Close()
	for _, r := range transparentRules() {
		for h.RuleDel(r) == nil {
		}
	}
	if lo, err := h.LinkByName("lo"); err == nil {
		for _, r := range transparentRoutes(lo.Attrs().Index) {
			h.RouteDel(r)
		}
	}
	setSysctlIn(nsPath, fwmarkAccept, "0")
	return nil
}

// TransparentControl returns a net.Dialer Control function for a socket
// that carries TransparentMark and may bind a non-local (the client's)
// address.
func TransparentControl(from netip.AddrPort) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, TransparentMark); serr != nil {
				return
			}
			if from.Addr().Is4() {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
			} else {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}
}
