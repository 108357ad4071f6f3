package sniff

import (
	"net/netip"
	"slices"
	"testing"

	"golang.org/x/net/bpf"
)

// runFilter runs prog on pkt (from its network header on) as the kernel
// would for a packet of the given ethertype. x/net/bpf's VM does not know
// the protocol extension the program starts with, so that first
// instruction is replaced by loading the ethertype.
func runFilter(t *testing.T, prog []bpf.RawInstruction, ethertype uint16, pkt []byte) int {
	t.Helper()
	return runFilterMark(t, prog, ethertype, 0, pkt)
}

// runFilterMark is runFilter for a packet carrying mark: the loads of the
// mark extension are replaced by loading mark.
func runFilterMark(t *testing.T, prog []bpf.RawInstruction, ethertype uint16, mark uint32, pkt []byte) int {
	t.Helper()
	ins, ok := bpf.Disassemble(prog)
	if !ok {
		t.Fatalf("the filter does not disassemble: %v", ins)
	}
	if ins[0] != (bpf.LoadExtension{Num: bpf.ExtProto}) {
		t.Fatalf("the filter starts with %v, want the protocol extension", ins[0])
	}
	ins[0] = bpf.LoadConstant{Dst: bpf.RegA, Val: uint32(ethertype)}
	for i, in := range ins {
		if in == (bpf.LoadExtension{Num: bpf.ExtMark}) {
			ins[i] = bpf.LoadConstant{Dst: bpf.RegA, Val: mark}
		}
	}
	vm, err := bpf.NewVM(ins)
	if err != nil {
		t.Fatalf("bpf.NewVM: %v", err)
	}
	n, err := vm.Run(pkt)
	if err != nil {
		t.Fatalf("running the filter: %v", err)
	}
	return n
}

// ethertype is the ethertype a packet socket gives p.
func (p pkt) ethertype() uint16 {
	if p.src.Addr().Is4() {
		return etherIPv4
	}
	return etherIPv6
}

// to returns p sent to port.
func (p pkt) to(port uint16) pkt {
	p.dst = netip.AddrPortFrom(p.dst.Addr(), port)
	return p
}

// from returns p sent from port.
func (p pkt) from(port uint16) pkt {
	p.src = netip.AddrPortFrom(p.src.Addr(), port)
	return p
}

func TestFilter(t *testing.T) {
	watched := []uint16{80, 8080, 443}
	prog, err := Filter(watched)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("GET / HTTP/1.1\r\n\r\n")
	v4 := pkt{src: v4Client, dst: v4Server, seq: 1, flags: FlagACK, payload: payload}
	v6 := pkt{src: v6Client, dst: v6Server, seq: 1, flags: FlagACK, payload: payload}
	with := func(p pkt, f func(*pkt)) pkt { f(&p); return p }

	type tcase struct {
		name      string
		ethertype uint16 // 0: the packet's own
		b         []byte
		keep      bool
	}
	var tests []tcase
	for _, port := range watched {
		for _, c := range []struct {
			name string
			p    pkt
		}{
			{"IPv4", v4},
			{"IPv4 SYN", with(v4, func(p *pkt) { p.flags = FlagSYN; p.payload = nil; p.tcpOpts = tcpOpts })},
			{"IPv4 DF", with(v4, func(p *pkt) { p.frag = 0x4000 })},
			{"IPv4 IP options", with(v4, func(p *pkt) { p.ipOpts = ipOpts4 })},
			{"IPv4 longest IP options", with(v4, func(p *pkt) { p.ipOpts = ipOpts40 })},
			{"IPv4 padding", with(v4, func(p *pkt) { p.pad = 6 })},
			{"IPv6", v6},
			{"IPv6 SYN", with(v6, func(p *pkt) { p.flags = FlagSYN; p.payload = nil; p.tcpOpts = tcpOpts })},
		} {
			tests = append(tests, tcase{name: c.name + " TCP to a watched port", b: c.p.to(port).bytes(), keep: true})
		}
	}
	for _, port := range []uint16{0, 1, 79, 81, 442, 444, 8079, 8081, 65535} {
		tests = append(tests,
			tcase{name: "IPv4 TCP to another port", b: v4.to(port).bytes()},
			tcase{name: "IPv4 IP options, TCP to another port", b: with(v4, func(p *pkt) { p.ipOpts = ipOpts4 }).to(port).bytes()},
			tcase{name: "IPv6 TCP to another port", b: v6.to(port).bytes()},
		)
	}
	udp := func(p *pkt) { p.udp = true }
	hopByHop := v6.to(80).bytes()
	hopByHop[6] = 0 // next header 0: hop-by-hop options
	tests = append(tests, []tcase{
		{name: "IPv4 TCP from a watched port", b: v4.from(80).to(40000).bytes()},
		{name: "IPv6 TCP from a watched port", b: v6.from(443).to(40000).bytes()},
		{name: "IPv4 UDP to a watched port", b: with(v4, udp).to(80).bytes()},
		{name: "IPv6 UDP to a watched port", b: with(v6, udp).to(443).bytes()},
		{name: "IPv4 ICMP", b: with(v4, func(p *pkt) { p.proto = 1 }).to(80).bytes()},
		{name: "IPv4 first fragment (MF)", b: with(v4, func(p *pkt) { p.frag = 0x2000 }).to(80).bytes()},
		{name: "IPv4 MF and DF", b: with(v4, func(p *pkt) { p.frag = 0x6000 }).to(80).bytes()},
		{name: "IPv4 fragment offset", b: with(v4, func(p *pkt) { p.frag = 0x0001 }).to(80).bytes()},
		{name: "IPv4 last fragment", b: with(v4, func(p *pkt) { p.frag = 0x1000 }).to(80).bytes()},
		{name: "IPv6 hop-by-hop options", b: hopByHop},
		{name: "IPv6 fragment header", b: with(v6, func(p *pkt) { p.proto = 44 }).to(80).bytes()},
		{name: "IPv6 routing header", b: with(v6, func(p *pkt) { p.proto = 43 }).to(80).bytes()},
		{name: "IPv4 packet cut before the port", b: v4.to(80).bytes()[:22]},
		{name: "IPv6 packet cut before the port", b: v6.to(80).bytes()[:42]},
		{name: "empty packet", ethertype: etherIPv4, b: []byte{}},
		{name: "ARP", ethertype: 0x0806, b: v4.to(80).bytes()},
		{name: "VLAN", ethertype: 0x8100, b: v4.to(80).bytes()},
		{name: "IPv4 packet as IPv6", ethertype: etherIPv6, b: v4.to(80).bytes()},
		{name: "ethertype 0", ethertype: 0, b: nil},
	}...)

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			et := tc.ethertype
			if et == 0 && len(tc.b) > 0 {
				et = etherIPv4
				if tc.b[0]>>4 == 6 {
					et = etherIPv6
				}
			}
			got := runFilter(t, prog, et, tc.b)
			want := 0
			if tc.keep {
				want = SnapLen
			}
			if got != want {
				s, err := ParseSegment(tc.b)
				t.Errorf("filter returns %d, want %d (packet %v → %v, err %v)", got, want, s.Src, s.Dst, err)
			}
		})
	}
}

func TestFilterPortCounts(t *testing.T) {
	ports := func(n int) []uint16 {
		p := make([]uint16, n)
		for i := range p {
			p[i] = uint16(10000 + 7*i) // not contiguous
		}
		// Not sorted.
		slices.Reverse(p)
		return p
	}
	for _, tc := range []struct {
		name  string
		ports []uint16
		keep  []uint16
		drop  []uint16
	}{
		{"1 port", ports(1), ports(1), []uint16{9999, 10001, 10007, 0, 65535}},
		{"2 ports", ports(2), ports(2), []uint16{9999, 10001, 10006, 10008, 10014, 0, 65535}},
		{"MaxPorts ports", ports(MaxPorts), ports(MaxPorts), []uint16{9999, 10001, 10006, 10008, 10000 + 7*MaxPorts, 0, 65535}},
		{"duplicates", []uint16{443, 80, 443, 80, 80}, []uint16{80, 443}, []uint16{81, 442, 444, 0}},
		{"MaxPorts ports, each twice", append(ports(MaxPorts), ports(MaxPorts)...), ports(MaxPorts), []uint16{9999, 10001, 10000 + 7*MaxPorts}},
		{"port 0 and 65535", []uint16{0, 65535}, []uint16{0, 65535}, []uint16{1, 65534}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			given := slices.Clone(tc.ports)
			prog, err := Filter(tc.ports)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(tc.ports, given) {
				t.Errorf("Filter changed its argument: %v, was %v", tc.ports, given)
			}
			for _, base := range []pkt{
				{src: v4Client, dst: v4Server, flags: FlagACK, payload: []byte("x")},
				{src: v4Client, dst: v4Server, flags: FlagACK, payload: []byte("x"), ipOpts: ipOpts4},
				{src: v6Client, dst: v6Server, flags: FlagACK, payload: []byte("x")},
			} {
				for _, port := range tc.keep {
					p := base.to(port)
					if got := runFilter(t, prog, p.ethertype(), p.bytes()); got != SnapLen {
						t.Errorf("%v → %v: filter returns %d, want %d", p.src, p.dst, got, SnapLen)
					}
				}
				for _, port := range tc.drop {
					p := base.to(port)
					if got := runFilter(t, prog, p.ethertype(), p.bytes()); got != 0 {
						t.Errorf("%v → %v: filter returns %d, want 0", p.src, p.dst, got)
					}
				}
			}
		})
	}
}

// With no ports the filter keeps nothing.
func TestFilterNoPorts(t *testing.T) {
	for _, ports := range [][]uint16{nil, {}} {
		prog, err := Filter(ports)
		if err != nil {
			t.Fatal(err)
		}
		ins, ok := bpf.Disassemble(prog)
		if !ok {
			t.Fatalf("the filter does not disassemble: %v", ins)
		}
		vm, err := bpf.NewVM(ins)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range []pkt{
			{src: v4Client, dst: v4Server, flags: FlagSYN},
			{src: v6Client, dst: v6Server, flags: FlagSYN},
			{src: v4Client, dst: netip.AddrPortFrom(v4Server.Addr(), 0), flags: FlagSYN},
		} {
			if n, err := vm.Run(p.bytes()); n != 0 || err != nil {
				t.Errorf("ports %v, %v → %v: filter returns %d, %v; want 0", ports, p.src, p.dst, n, err)
			}
		}
	}
}

func TestFilterTooManyPorts(t *testing.T) {
	ports := make([]uint16, MaxPorts+1)
	for i := range ports {
		ports[i] = uint16(1 + i)
	}
	if prog, err := Filter(ports); err == nil {
		t.Errorf("Filter of %d ports: %d instructions, no error", len(ports), len(prog))
	}
	if _, err := Filter(ports[:MaxPorts]); err != nil {
		t.Errorf("Filter of %d ports: %v", MaxPorts, err)
	}
}

// A drop lands on the drop instruction, not on the last port check with
// the value that made it drop still loaded: a port equal to the IPv4
// protocol, the fragment field, the ethertype or the IPv6 next header
// changes nothing.
func TestFilterDropsSkipThePortChecks(t *testing.T) {
	v4 := pkt{src: v4Client, dst: v4Server, flags: FlagACK, payload: []byte("x")}
	v6 := pkt{src: v6Client, dst: v6Server, flags: FlagACK, payload: []byte("x")}
	with := func(p pkt, f func(*pkt)) pkt { f(&p); return p }
	tests := []struct {
		name      string
		value     uint16 // left in A when the packet is dropped
		ethertype uint16
		b         []byte
	}{
		{"IPv4 UDP", 17, etherIPv4, with(v4, func(p *pkt) { p.udp = true }).to(53).bytes()},
		{"IPv4 ICMP", 1, etherIPv4, with(v4, func(p *pkt) { p.proto = 1 }).to(53).bytes()},
		{"IPv4 fragment", 0x2000, etherIPv4, with(v4, func(p *pkt) { p.frag = 0x2000 }).to(53).bytes()},
		{"IPv4 fragment offset", 0x0010, etherIPv4, with(v4, func(p *pkt) { p.frag = 0x0010 }).to(53).bytes()},
		{"ARP", 0x0806, 0x0806, v4.to(53).bytes()},
		{"IPv6 UDP", 17, etherIPv6, with(v6, func(p *pkt) { p.udp = true }).to(53).bytes()},
		{"IPv6 fragment header", 44, etherIPv6, with(v6, func(p *pkt) { p.proto = 44 }).to(53).bytes()},
	}
	for _, tc := range tests {
		for _, ports := range [][]uint16{{tc.value}, {1, tc.value}, {tc.value - 1, tc.value}} {
			prog, err := Filter(ports)
			if err != nil {
				t.Fatal(err)
			}
			if got := runFilter(t, prog, tc.ethertype, tc.b); got != 0 {
				t.Errorf("%s, ports %v: filter returns %d, want 0", tc.name, ports, got)
			}
		}
	}
}

// Packets carrying one of the marks to skip are not kept.
func TestFilterSkipMarks(t *testing.T) {
	v4 := pkt{src: v4Client, dst: v4Server, flags: FlagACK, payload: []byte("x")}
	v6 := pkt{src: v6Client, dst: v6Server, flags: FlagACK, payload: []byte("x")}
	eight := []uint32{1, 2, 3, 0x100, 0x200, 0xdead, 0xffffffff, 7}
	for _, tc := range []struct {
		name  string
		ports []uint16
		marks []uint32
		kept  []uint32 // marks kept on a watched port
	}{
		{"no marks", []uint16{80}, nil, []uint32{0, 1, 0x100}},
		{"one mark", []uint16{80, 443}, []uint32{0x100}, []uint32{0, 1, 0x101, 0xffffffff}},
		{"two marks", []uint16{80}, []uint32{0x100, 0x200}, []uint32{0, 0x300, 0x1100}},
		{"duplicate marks", []uint16{80}, []uint32{0x100, 0x100}, []uint32{0, 0x200}},
		{"eight marks", []uint16{80}, eight, []uint32{0, 4, 0x300}},
		{"eight marks, MaxPorts ports", append(make([]uint16, MaxPorts-1), 80), eight, []uint32{0, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prog, err := Filter(tc.ports, tc.marks...)
			if err != nil {
				t.Fatal(err)
			}
			for _, base := range []pkt{v4, v6} {
				for _, m := range tc.kept {
					if got := runFilterMark(t, prog, base.ethertype(), m, base.to(80).bytes()); got != SnapLen {
						t.Errorf("%v → port 80, mark %#x: filter returns %d, want %d", base.src.Addr(), m, got, SnapLen)
					}
					if got := runFilterMark(t, prog, base.ethertype(), m, base.to(81).bytes()); got != 0 {
						t.Errorf("%v → port 81, mark %#x: filter returns %d, want 0", base.src.Addr(), m, got)
					}
				}
				for _, m := range tc.marks {
					if got := runFilterMark(t, prog, base.ethertype(), m, base.to(80).bytes()); got != 0 {
						t.Errorf("%v → port 80, mark %#x (skipped): filter returns %d, want 0", base.src.Addr(), m, got)
					}
				}
			}
		})
	}
}

func TestFilterTooManyMarks(t *testing.T) {
	for _, n := range []int{9, 100, 256, 512} {
		marks := make([]uint32, n)
		for i := range marks {
			marks[i] = uint32(i + 1)
		}
		if prog, err := Filter([]uint16{80}, marks...); err == nil {
			t.Errorf("Filter with %d marks: %d instructions, no error", n, len(prog))
		}
	}
}
