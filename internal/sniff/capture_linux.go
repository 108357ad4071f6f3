package sniff

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/netns"
)

// The receive ring: blocks the kernel fills with packets and hands over
// when full or after blockTimeout, so a busy port costs one wakeup per
// block, not one per packet.
const (
	blockSize    = 1 << 18
	blockCount   = 8
	blockTimeout = 4 // ms
)

// Capture reads the packets a namespace's interfaces receive (not those
// it sends), through a packet socket and its memory-mapped ring (TPACKET_V3).
type Capture struct {
	file *os.File
	rc   syscall.RawConn
	ring []byte
	cur  int
	skip []uint32 // marks whose packets are not kept

	mu             sync.Mutex // Stats
	packets, drops uint64
	closed         atomic.Bool
	done           chan struct{} // Run returned (or never ran)
	runOnce        sync.Once
}

// Listen opens a capture in the network namespace at nsPath ("": the
// caller's own). It keeps nothing until SetPorts, and never packets
// carrying one of skipMarks. It needs CAP_NET_RAW.
func Listen(nsPath string, skipMarks ...uint32) (*Capture, error) {
	var fd int
	open := func() error {
		var err error
		// Protocol 0: nothing is received until the filter is on and bind
		// names the protocol.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		return err
	}
	var err error
	if nsPath == "" {
		err = open()
	} else {
		err = netns.Do(nsPath, unix.CLONE_NEWNET, open)
	}
	if err != nil {
		return nil, fmt.Errorf("opening a packet socket: %w (mirroring without a redirect needs CAP_NET_RAW)", err)
	}
	c, err := setup(fd)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	c.skip = skipMarks
	return c, nil
}

func setup(fd int) (*Capture, error) {
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1); err != nil {
		return nil, fmt.Errorf("packet socket: PACKET_IGNORE_OUTGOING: %w (Linux 4.20 or later)", err)
	}
	if err := attach(fd); err != nil {
		return nil, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VERSION, unix.TPACKET_V3); err != nil {
		return nil, fmt.Errorf("packet socket: TPACKET_V3: %w", err)
	}
	req := unix.TpacketReq3{
		Block_size:     blockSize,
		Block_nr:       blockCount,
		Frame_size:     blockSize,
		Frame_nr:       blockCount,
		Retire_blk_tov: blockTimeout,
	}
	if err := unix.SetsockoptTpacketReq3(fd, unix.SOL_PACKET, unix.PACKET_RX_RING, &req); err != nil {
		return nil, fmt.Errorf("packet socket: receive ring: %w", err)
	}
	ring, err := unix.Mmap(fd, 0, blockSize*blockCount, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("packet socket: mapping the ring: %w", err)
	}
	sa := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL)}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Munmap(ring)
		return nil, fmt.Errorf("packet socket: bind: %w", err)
	}
	file := os.NewFile(uintptr(fd), "packet-capture")
	rc, err := file.SyscallConn()
	if err != nil {
		unix.Munmap(ring)
		return nil, err
	}
	return &Capture{file: file, rc: rc, ring: ring, done: make(chan struct{})}, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// attach sets the socket's filter to keep nothing.
func attach(fd int) error {
	prog, err := Filter(nil)
	if err != nil {
		return err
	}
	return setFilter(fd, prog)
}

func setFilter(fd int, prog []bpf.RawInstruction) error {
	fp := unix.SockFprog{Len: uint16(len(prog)), Filter: (*unix.SockFilter)(unsafe.Pointer(&prog[0]))}
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fp); err != nil {
		return fmt.Errorf("packet socket: attaching the filter: %w", err)
	}
	return nil
}

// SetPorts makes the capture keep the TCP segments to ports (none:
// nothing).
func (c *Capture) SetPorts(ports []uint16) error {
	prog, err := Filter(ports, c.skip...)
	if err != nil {
		return err
	}
	var ferr error
	if err := c.rc.Control(func(fd uintptr) { ferr = setFilter(int(fd), prog) }); err != nil {
		return fmt.Errorf("packet socket: %w", err)
	}
	return ferr
}

// The block descriptor's and packet header's fields (linux/if_packet.h).
const (
	tpStatusKernel = 0
	tpStatusUser   = 1

	bdStatus   = 8  // tpacket_block_desc.hdr.bh1.block_status
	bdNumPkts  = 12 // .num_pkts
	bdFirstPkt = 16 // .offset_to_first_pkt

	phNext    = 0  // tpacket3_hdr.tp_next_offset
	phSnapLen = 12 // .tp_snaplen
	phLen     = 16 // .tp_len
	phNet     = 26 // .tp_net
)

// Run hands every packet kept to fn (its network header on; pkt is only
// valid during the call; truncated is true when the packet was cut) until
// Close. It is called once.
func (c *Capture) Run(fn func(pkt []byte, truncated bool, now time.Time)) error {
	started := false
	c.runOnce.Do(func() { started = true })
	if !started {
		if c.closed.Load() {
			return nil
		}
		return errors.New("sniff: Capture.Run called twice")
	}
	defer close(c.done)
	err := c.rc.Read(func(uintptr) bool {
		c.drain(fn)
		return c.closed.Load()
	})
	if c.closed.Load() {
		return nil
	}
	return err
}

// drain reads the blocks the kernel handed over, in ring order.
func (c *Capture) drain(fn func(pkt []byte, truncated bool, now time.Time)) {
	ne := binary.NativeEndian
	for !c.closed.Load() {
		b := c.ring[c.cur*blockSize : (c.cur+1)*blockSize]
		status := (*uint32)(unsafe.Pointer(&b[bdStatus]))
		if atomic.LoadUint32(status)&tpStatusUser == 0 {
			return
		}
		now := time.Now()
		n := ne.Uint32(b[bdNumPkts:])
		off := int(ne.Uint32(b[bdFirstPkt:]))
		for range n {
			if off <= 0 || off+phNet+2 > len(b) {
				break
			}
			h := b[off:]
			// SOCK_DGRAM: the packet starts at its network header, and
			// its lengths count from there.
			snap, full, net := int(ne.Uint32(h[phSnapLen:])), int(ne.Uint32(h[phLen:])), int(ne.Uint16(h[phNet:]))
			if net > 0 && off+net+snap <= len(b) {
				fn(b[off+net:off+net+snap], snap < full, now)
			}
			next := int(ne.Uint32(h[phNext:]))
			if next == 0 {
				break
			}
			off += next
		}
		atomic.StoreUint32(status, tpStatusKernel)
		c.cur = (c.cur + 1) % blockCount
	}
}

// Stats returns the packets the socket received and those it dropped
// (the ring was full) since it opened.
func (c *Capture) Stats() (packets, drops uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rc.Control(func(fd uintptr) {
		if s, err := unix.GetsockoptTpacketStatsV3(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			c.packets += uint64(s.Packets)
			c.drops += uint64(s.Drops)
		}
	})
	return c.packets, c.drops
}

// Close ends Run and releases the socket and its ring.
func (c *Capture) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	err := c.file.Close() // wakes Run's wait
	c.runOnce.Do(func() { close(c.done) })
	<-c.done
	unix.Munmap(c.ring)
	return err
}
