package layer

import (
	"encoding/binary"
	"net/netip"
)

// Address families (Linux values; kept here so this file builds anywhere
// and its fuzz target runs on any platform).
const (
	afUnix  = 1
	afInet  = 2
	afInet6 = 10
)

// parseSockaddr decodes a struct sockaddr_in / sockaddr_in6 read from the
// trapped process. ok is false for other families or short buffers;
// v4-mapped IPv6 addresses are unmapped.
func parseSockaddr(b []byte) (ap netip.AddrPort, family int, ok bool) {
	if len(b) < 2 {
		return netip.AddrPort{}, 0, false
	}
	family = int(binary.LittleEndian.Uint16(b))
	switch {
	case family == afInet && len(b) >= 8:
		port := binary.BigEndian.Uint16(b[2:4])
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[4:8])), port), family, true
	case family == afInet6 && len(b) >= 24:
		port := binary.BigEndian.Uint16(b[2:4])
		return netip.AddrPortFrom(netip.AddrFrom16([16]byte(b[8:24])).Unmap(), port), family, true
	}
	return netip.AddrPort{}, family, false
}

// encodeSockaddr renders ap as a sockaddr of the given family (an IPv4
// address becomes v4-mapped in an AF_INET6 sockaddr).
func encodeSockaddr(family int, ap netip.AddrPort) []byte {
	if family == afInet {
		b := make([]byte, 16)
		binary.LittleEndian.PutUint16(b, afInet)
		binary.BigEndian.PutUint16(b[2:], ap.Port())
		a := ap.Addr().Unmap().As4()
		copy(b[4:], a[:])
		return b
	}
	b := make([]byte, 28)
	binary.LittleEndian.PutUint16(b, afInet6)
	binary.BigEndian.PutUint16(b[2:], ap.Port())
	a := ap.Addr().As16()
	copy(b[8:], a[:])
	return b
}
