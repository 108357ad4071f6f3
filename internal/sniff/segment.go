// Package sniff copies the TCP byte streams that clients send to chosen
// ports of a network namespace, from a packet socket, without touching
// the connections: the app's traffic takes its usual path and the copy
// costs it nothing but the kernel's clone of each packet. It is how the
// agent mirrors a port no session steals from.
//
// Capture (Linux) reads the packets; Tracker puts each connection's
// bytes back in order and hands them to a Handler.
package sniff

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// TCP flags this package looks at.
const (
	FlagFIN = 0x01
	FlagSYN = 0x02
	FlagRST = 0x04
	FlagACK = 0x10
)

// Segment is one TCP segment as captured.
type Segment struct {
	Src, Dst netip.AddrPort
	Seq      uint32
	Flags    uint8
	Payload  []byte // aliases the packet
}

var (
	errShort     = errors.New("sniff: packet shorter than its headers")
	errNotTCP    = errors.New("sniff: not TCP")
	errFragment  = errors.New("sniff: IP fragment")
	errBadHeader = errors.New("sniff: malformed header")
)

// ParseSegment reads an IPv4 or IPv6 packet (from its network header on)
// carrying TCP. A packet cut short (truncated capture) is an error, never
// a shorter payload: the stream would silently lose bytes.
func ParseSegment(pkt []byte) (Segment, error) {
	if len(pkt) < 1 {
		return Segment{}, errShort
	}
	var s Segment
	var src, dst netip.Addr
	var tcp []byte
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < 20 {
			return s, errShort
		}
		ihl := int(pkt[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(pkt[2:4]))
		if ihl < 20 || total < ihl {
			return s, errBadHeader
		}
		if total > len(pkt) {
			return s, errShort
		}
		if pkt[9] != 6 {
			return s, errNotTCP
		}
		if binary.BigEndian.Uint16(pkt[6:8])&0x3fff != 0 { // more fragments, or an offset
			return s, errFragment
		}
		src = netip.AddrFrom4([4]byte(pkt[12:16]))
		dst = netip.AddrFrom4([4]byte(pkt[16:20]))
		tcp = pkt[ihl:total]
	case 6:
		if len(pkt) < 40 {
			return s, errShort
		}
		plen := int(binary.BigEndian.Uint16(pkt[4:6]))
		if 40+plen > len(pkt) {
			return s, errShort
		}
		if pkt[6] != 6 { // extension headers are not followed
			return s, errNotTCP
		}
		src = netip.AddrFrom16([16]byte(pkt[8:24]))
		dst = netip.AddrFrom16([16]byte(pkt[24:40]))
		tcp = pkt[40 : 40+plen]
	default:
		return s, errBadHeader
	}
	if len(tcp) < 20 {
		return s, errShort
	}
	off := int(tcp[12]>>4) * 4
	if off < 20 || off > len(tcp) {
		return s, errBadHeader
	}
	s.Src = netip.AddrPortFrom(src, binary.BigEndian.Uint16(tcp[0:2]))
	s.Dst = netip.AddrPortFrom(dst, binary.BigEndian.Uint16(tcp[2:4]))
	s.Seq = binary.BigEndian.Uint32(tcp[4:8])
	s.Flags = tcp[13]
	s.Payload = tcp[off:]
	return s, nil
}
