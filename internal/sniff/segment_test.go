package sniff

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
)

// pkt describes a test packet, from its network header on.
type pkt struct {
	src, dst netip.AddrPort // the family of src picks IPv4 or IPv6
	seq      uint32
	flags    uint8
	payload  []byte

	proto   byte   // IPv4 protocol / IPv6 next header; 0: TCP
	udp     bool   // an 8-byte UDP header instead of TCP's
	ipOpts  []byte // IPv4 options, a multiple of 4 bytes
	tcpOpts []byte // TCP options, a multiple of 4 bytes
	frag    uint16 // IPv4 flags and fragment offset field
	pad     int    // bytes after the IP packet (Ethernet padding)
}

var (
	v4Client = netip.MustParseAddrPort("10.1.2.3:40000")
	v4Server = netip.MustParseAddrPort("10.9.8.7:8080")
	v6Client = netip.MustParseAddrPort("[2001:db8::1]:40000")
	v6Server = netip.MustParseAddrPort("[2001:db8::2]:8080")
)

// bytes encodes p.
func (p pkt) bytes() []byte {
	var l4 []byte
	if p.udp {
		l4 = make([]byte, 8, 8+len(p.payload))
		binary.BigEndian.PutUint16(l4[0:], p.src.Port())
		binary.BigEndian.PutUint16(l4[2:], p.dst.Port())
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(p.payload)))
	} else {
		hl := 20 + len(p.tcpOpts)
		l4 = make([]byte, 20, hl+len(p.payload))
		binary.BigEndian.PutUint16(l4[0:], p.src.Port())
		binary.BigEndian.PutUint16(l4[2:], p.dst.Port())
		binary.BigEndian.PutUint32(l4[4:], p.seq)
		binary.BigEndian.PutUint32(l4[8:], 0x01020304) // ack
		l4[12] = byte(hl/4) << 4
		l4[13] = p.flags
		binary.BigEndian.PutUint16(l4[14:], 65535) // window
		l4 = append(l4, p.tcpOpts...)
	}
	l4 = append(l4, p.payload...)

	proto := p.proto
	if proto == 0 {
		proto = 6
		if p.udp {
			proto = 17
		}
	}
	var ip []byte
	if p.src.Addr().Is4() {
		hl := 20 + len(p.ipOpts)
		ip = make([]byte, 20, hl+len(l4)+p.pad)
		ip[0] = 0x40 | byte(hl/4)
		binary.BigEndian.PutUint16(ip[2:], uint16(hl+len(l4)))
		binary.BigEndian.PutUint16(ip[4:], 0x1234) // id
		binary.BigEndian.PutUint16(ip[6:], p.frag)
		ip[8] = 64
		ip[9] = proto
		s, d := p.src.Addr().As4(), p.dst.Addr().As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		ip = append(ip, p.ipOpts...)
	} else {
		ip = make([]byte, 40, 40+len(l4)+p.pad)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
		ip[6] = proto
		ip[7] = 64
		s, d := p.src.Addr().As16(), p.dst.Addr().As16()
		copy(ip[8:], s[:])
		copy(ip[24:], d[:])
	}
	ip = append(ip, l4...)
	for range p.pad {
		ip = append(ip, 0xee)
	}
	return ip
}

// Some option bytes: NOPs then an end of options list.
var (
	ipOpts4   = []byte{1, 1, 1, 0}
	ipOpts40  = append(bytes.Repeat([]byte{1}, 39), 0) // the most IHL allows
	tcpOpts   = []byte{2, 4, 0x05, 0xb4, 1, 1, 4, 2}   // MSS, NOP, NOP, SACK permitted
	tcpOpts40 = append(bytes.Repeat([]byte{1}, 39), 0)
)

func TestParseSegment(t *testing.T) {
	hello := []byte("hello, world")
	tests := []struct {
		name string
		p    pkt
	}{
		{"IPv4", pkt{src: v4Client, dst: v4Server, seq: 1000, flags: FlagACK, payload: hello}},
		{"IPv4 ECN SYN, PSH", pkt{src: v4Client, dst: v4Server, seq: 1, flags: 0xc0 | FlagSYN | 0x08}},
		{"IPv4 no payload", pkt{src: v4Client, dst: v4Server, seq: 1, flags: FlagSYN}},
		{"IPv4 DF set", pkt{src: v4Client, dst: v4Server, seq: 7, flags: FlagACK, payload: hello, frag: 0x4000}},
		{"IPv4 IP options", pkt{src: v4Client, dst: v4Server, seq: 0xfffffff0, flags: FlagACK | FlagFIN, payload: hello, ipOpts: ipOpts4}},
		{"IPv4 longest IP options", pkt{src: v4Client, dst: v4Server, seq: 5, flags: FlagACK, payload: hello, ipOpts: ipOpts40}},
		{"IPv4 TCP options", pkt{src: v4Client, dst: v4Server, seq: 5, flags: FlagSYN, payload: hello, tcpOpts: tcpOpts}},
		{"IPv4 longest TCP options", pkt{src: v4Client, dst: v4Server, seq: 5, flags: FlagACK, payload: hello, tcpOpts: tcpOpts40}},
		{"IPv4 both options", pkt{src: v4Client, dst: v4Server, seq: 5, flags: FlagACK, payload: hello, ipOpts: ipOpts4, tcpOpts: tcpOpts}},
		{"IPv4 Ethernet padding", pkt{src: v4Client, dst: v4Server, seq: 9, flags: FlagACK, payload: []byte("ab"), pad: 4}},
		{"IPv4 padding, no payload", pkt{src: v4Client, dst: v4Server, seq: 9, flags: FlagACK, pad: 6}},
		{"IPv6", pkt{src: v6Client, dst: v6Server, seq: 1 << 31, flags: FlagACK | FlagRST, payload: hello}},
		{"IPv6 TCP options", pkt{src: v6Client, dst: v6Server, seq: 3, flags: FlagSYN, payload: hello, tcpOpts: tcpOpts}},
		{"IPv6 padding", pkt{src: v6Client, dst: v6Server, seq: 3, flags: FlagACK, payload: hello, pad: 3}},
		{"IPv6 v4-mapped", pkt{src: netip.MustParseAddrPort("[::ffff:10.0.0.1]:1"), dst: netip.MustParseAddrPort("[::ffff:10.0.0.2]:2"), seq: 3, payload: hello}},
		{"large payload", pkt{src: v4Client, dst: v4Server, seq: 3, flags: FlagACK, payload: bytes.Repeat([]byte{0xab}, 65000)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.p.bytes()
			s, err := ParseSegment(b)
			if err != nil {
				t.Fatalf("ParseSegment: %v", err)
			}
			if s.Src != tc.p.src || s.Dst != tc.p.dst {
				t.Errorf("addresses %v → %v, want %v → %v", s.Src, s.Dst, tc.p.src, tc.p.dst)
			}
			if s.Seq != tc.p.seq {
				t.Errorf("Seq %#x, want %#x", s.Seq, tc.p.seq)
			}
			if s.Flags != tc.p.flags {
				t.Errorf("Flags %#x, want %#x", s.Flags, tc.p.flags)
			}
			if !bytes.Equal(s.Payload, tc.p.payload) {
				t.Errorf("Payload %d bytes %q, want %d bytes %q", len(s.Payload), trunc(s.Payload), len(tc.p.payload), trunc(tc.p.payload))
			}
		})
	}
}

func trunc(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

func TestParseSegmentErrors(t *testing.T) {
	v4 := pkt{src: v4Client, dst: v4Server, seq: 1, flags: FlagACK, payload: []byte("data")}
	v6 := pkt{src: v6Client, dst: v6Server, seq: 1, flags: FlagACK, payload: []byte("data")}
	with := func(p pkt, f func(*pkt)) pkt { f(&p); return p }
	// cut returns the packet encoded without its last n bytes.
	cut := func(p pkt, n int) []byte { b := p.bytes(); return b[:len(b)-n] }
	set := func(p pkt, f func([]byte)) []byte { b := p.bytes(); f(b); return b }

	tests := []struct {
		name string
		b    []byte
		want error
	}{
		{"nil", nil, errShort},
		{"empty", []byte{}, errShort},
		{"IPv4 one byte", []byte{0x45}, errShort},
		{"IPv4 19 bytes", v4.bytes()[:19], errShort},
		{"IPv4 truncated payload", cut(v4, 1), errShort},
		{"IPv4 truncated to the headers", cut(v4, len(v4.payload)), errShort},
		{"IPv4 truncated TCP header", v4.bytes()[:30], errShort},
		{"IPv4 truncated IP options", with(v4, func(p *pkt) { p.ipOpts = ipOpts40 }).bytes()[:40], errShort},
		{"IPv4 total length beyond the buffer", set(v4, func(b []byte) { binary.BigEndian.PutUint16(b[2:], uint16(len(b)+1)) }), errShort},
		{"IPv4 total length 65535", set(v4, func(b []byte) { binary.BigEndian.PutUint16(b[2:], 65535) }), errShort},
		{"IPv4 total length leaves no TCP header", set(v4, func(b []byte) { binary.BigEndian.PutUint16(b[2:], 39) }), errShort},
		{"IPv4 UDP", with(v4, func(p *pkt) { p.udp = true; p.payload = make([]byte, 20) }).bytes(), errNotTCP},
		{"IPv4 ICMP", with(v4, func(p *pkt) { p.proto = 1 }).bytes(), errNotTCP},
		{"IPv4 more fragments", with(v4, func(p *pkt) { p.frag = 0x2000 }).bytes(), errFragment},
		{"IPv4 more fragments and DF", with(v4, func(p *pkt) { p.frag = 0x6000 }).bytes(), errFragment},
		{"IPv4 fragment offset", with(v4, func(p *pkt) { p.frag = 0x0001 }).bytes(), errFragment},
		{"IPv4 last fragment", with(v4, func(p *pkt) { p.frag = 0x1fff }).bytes(), errFragment},
		// With b[12] or b[28] 0x50, a TCP header read at 0 or 16 would parse.
		{"IPv4 IHL 0", set(v4, func(b []byte) { b[0] = 0x40; b[12] = 0x50 }), errBadHeader},
		{"IPv4 IHL 4", set(v4, func(b []byte) { b[0] = 0x44; b[28] = 0x50 }), errBadHeader},
		{"IPv4 IHL past total length", set(v4, func(b []byte) { b[0] = 0x4f; binary.BigEndian.PutUint16(b[2:], 40) }), errBadHeader},
		{"IPv4 total length shorter than IHL", set(v4, func(b []byte) { binary.BigEndian.PutUint16(b[2:], 19) }), errBadHeader},
		{"IPv4 TCP data offset 0", set(v4, func(b []byte) { b[32] = 0x00 }), errBadHeader},
		{"IPv4 TCP data offset 4", set(v4, func(b []byte) { b[32] = 0x40 }), errBadHeader},
		{"IPv4 TCP data offset past the segment", set(v4, func(b []byte) { b[32] = 0xf0 }), errBadHeader},
		{"IPv4 TCP data offset one word past", set(v4, func(b []byte) { b[32] = 0x70 }), errBadHeader},
		{"IPv6 5 bytes", v6.bytes()[:5], errShort},
		{"IPv6 39 bytes", v6.bytes()[:39], errShort},
		{"IPv6 truncated payload", cut(v6, 1), errShort},
		{"IPv6 payload length beyond the buffer", set(v6, func(b []byte) { binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40+1)) }), errShort},
		{"IPv6 truncated TCP header", v6.bytes()[:50], errShort},
		{"IPv6 payload length 0", set(v6, func(b []byte) { binary.BigEndian.PutUint16(b[4:], 0) }), errShort},
		{"IPv6 UDP", with(v6, func(p *pkt) { p.udp = true; p.payload = make([]byte, 20) }).bytes(), errNotTCP},
		{"IPv6 hop-by-hop header", set(v6, func(b []byte) { b[6] = 0 }), errNotTCP},
		{"IPv6 fragment header", set(v6, func(b []byte) { b[6] = 44 }), errNotTCP},
		{"IPv6 ICMPv6", set(v6, func(b []byte) { b[6] = 58 }), errNotTCP},
		{"IPv6 TCP data offset past the segment", set(v6, func(b []byte) { b[52] = 0xf0 }), errBadHeader},
		{"IPv6 TCP data offset 4", set(v6, func(b []byte) { b[52] = 0x40 }), errBadHeader},
		{"version 0", set(v4, func(b []byte) { b[0] = 0x05 }), errBadHeader},
		{"version 5", set(v4, func(b []byte) { b[0] = 0x55 }), errBadHeader},
		{"version 15", set(v6, func(b []byte) { b[0] = 0xf0 }), errBadHeader},
		{"version 6 header in an IPv4 packet", set(v4, func(b []byte) { b[0] = 0x65 }), errShort},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSegment(tc.b)
			if !errors.Is(err, tc.want) {
				t.Fatalf("ParseSegment = %+v, %v; want error %v", s, err, tc.want)
			}
		})
	}
}

// The payload aliases the packet: no copy is made.
func TestParseSegmentPayloadAliases(t *testing.T) {
	b := pkt{src: v4Client, dst: v4Server, payload: []byte("xyz")}.bytes()
	s, err := ParseSegment(b)
	if err != nil {
		t.Fatal(err)
	}
	if &s.Payload[0] != &b[len(b)-3] {
		t.Error("Payload does not alias the packet's last bytes")
	}
}

// seedPackets are the packets of TestParseSegment and a few broken ones.
func seedPackets() [][]byte {
	payload := []byte("seed payload")
	var out [][]byte
	for _, p := range []pkt{
		{src: v4Client, dst: v4Server, seq: 1, flags: FlagACK, payload: payload},
		{src: v4Client, dst: v4Server, seq: 1, flags: FlagSYN},
		{src: v4Client, dst: v4Server, seq: 1, payload: payload, ipOpts: ipOpts4, tcpOpts: tcpOpts},
		{src: v4Client, dst: v4Server, seq: 1, payload: payload, pad: 6},
		{src: v4Client, dst: v4Server, seq: 1, payload: payload, frag: 0x2000},
		{src: v4Client, dst: v4Server, payload: payload, udp: true},
		{src: v6Client, dst: v6Server, seq: 1, flags: FlagACK, payload: payload},
		{src: v6Client, dst: v6Server, seq: 1, payload: payload, tcpOpts: tcpOpts40, pad: 2},
		{src: v6Client, dst: v6Server, payload: payload, udp: true},
	} {
		b := p.bytes()
		out = append(out, b, b[:len(b)-1], b[:len(b)/2])
	}
	return append(out, nil, []byte{0x45}, []byte{0x60}, []byte{0xf0, 0, 0, 0})
}

func FuzzParseSegment(f *testing.F) {
	for _, b := range seedPackets() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseSegment(b)
		if err != nil {
			return
		}
		// The payload is a part of b, and ends where the IP packet does.
		if len(s.Payload) > 0 {
			start := -1
			for i := range b {
				if &b[i] == &s.Payload[0] {
					start = i
					break
				}
			}
			if start < 0 {
				t.Fatalf("Payload (%d bytes) is not within the input (%d bytes)", len(s.Payload), len(b))
			}
			if start+len(s.Payload) > len(b) {
				t.Fatalf("Payload [%d:%d] runs past the input (%d bytes)", start, start+len(s.Payload), len(b))
			}
			end := 0
			if b[0]>>4 == 4 {
				end = int(binary.BigEndian.Uint16(b[2:4]))
			} else {
				end = 40 + int(binary.BigEndian.Uint16(b[4:6]))
			}
			if start+len(s.Payload) != end {
				t.Fatalf("Payload ends at %d, the IP packet at %d", start+len(s.Payload), end)
			}
		}
		switch b[0] >> 4 {
		case 4:
			if !s.Src.Addr().Is4() || !s.Dst.Addr().Is4() {
				t.Fatalf("version 4 packet with addresses %v → %v", s.Src, s.Dst)
			}
		case 6:
			if !s.Src.Addr().Is6() || !s.Dst.Addr().Is6() {
				t.Fatalf("version 6 packet with addresses %v → %v", s.Src, s.Dst)
			}
		default:
			t.Fatalf("version %d packet parsed: %+v", b[0]>>4, s)
		}
	})
}
