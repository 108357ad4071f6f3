package sniff

import (
	"fmt"
	"slices"

	"golang.org/x/net/bpf"
)

// SnapLen is the most of a packet the filter keeps: more than any
// segment a capture sees, even one the kernel coalesced (GRO), so no
// payload is ever cut.
const SnapLen = 1 << 18

// MaxPorts is how many ports one filter can watch.
const MaxPorts = 200

// Ethernet types, as the packet socket gives them.
const (
	etherIPv4 = 0x0800
	etherIPv6 = 0x86dd
)

// Filter is the classic BPF program that keeps the TCP segments (IPv4,
// unfragmented; IPv6 without extension headers) whose destination port is
// one of ports, from the network header on (a SOCK_DGRAM packet socket).
// With no ports it keeps nothing. Packets carrying one of skipMarks (the
// agent's own sockets' marks, on the loopback) are not kept.
func Filter(ports []uint16, skipMarks ...uint32) ([]bpf.RawInstruction, error) {
	ports = slices.Compact(slices.Sorted(slices.Values(ports)))
	if len(ports) > MaxPorts {
		return nil, fmt.Errorf("sniff: %d ports in one filter; at most %d", len(ports), MaxPorts)
	}
	drop := bpf.RetConstant{Val: 0}
	if len(ports) == 0 {
		return bpf.Assemble([]bpf.Instruction{drop})
	}
	// A jump from instruction i skipping s lands on i+1+s. The port
	// checks start at 13; then come drop (13+n), the marks' checks (when
	// any) and keep (14+n without marks).
	n := uint8(len(ports))
	prog := []bpf.Instruction{
		/* 0 */ bpf.LoadExtension{Num: bpf.ExtProto},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherIPv4, SkipFalse: 7}, // → 9
		// IPv4: TCP, not a fragment, the port after the header.
		/* 2 */ bpf.LoadAbsolute{Off: 9, Size: 1},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipFalse: 9 + n}, // → drop
		/* 4 */ bpf.LoadAbsolute{Off: 6, Size: 2},
		/* 5 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x3fff, SkipTrue: 7 + n}, // → drop
		/* 6 */ bpf.LoadMemShift{Off: 0},
		/* 7 */ bpf.LoadIndirect{Off: 2, Size: 2},
		/* 8 */ bpf.Jump{Skip: 4}, // → 13
		// IPv6: next header TCP, the port at 40+2.
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherIPv6, SkipFalse: 3 + n}, // → drop
		/* 10 */ bpf.LoadAbsolute{Off: 6, Size: 1},
		/* 11 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipFalse: 1 + n}, // → drop
		/* 12 */ bpf.LoadAbsolute{Off: 42, Size: 2},
	}
	for i, p := range ports {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(p), SkipTrue: n - uint8(i)}) // → keep
	}
	prog = append(prog, drop)
	if len(skipMarks) > 8 {
		return nil, fmt.Errorf("sniff: %d marks to skip; at most 8", len(skipMarks))
	}
	if k := uint8(len(skipMarks)); k > 0 {
		prog = append(prog, bpf.LoadExtension{Num: bpf.ExtMark})
		for j, m := range skipMarks {
			prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: m, SkipTrue: k - uint8(j)}) // → the last drop
		}
		prog = append(prog, bpf.RetConstant{Val: SnapLen}, drop)
		return bpf.Assemble(prog)
	}
	prog = append(prog, bpf.RetConstant{Val: SnapLen})
	return bpf.Assemble(prog)
}
