package sniff

import (
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Sniffer follows the connections to a set of ports of one network
// namespace: a Capture feeding a Tracker, swept every second.
type Sniffer struct {
	capt *Capture
	tr   *Tracker
	stop chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex
	ports []uint16
	// Truncated counts packets the capture cut short, Malformed those
	// that did not parse as TCP (both make their connection Lost, by
	// the gap they leave).
	truncated, malformed uint64
}

// Start opens a capture in the namespace at nsPath ("": the caller's)
// that watches no port yet, and follows what it keeps with h. Packets of
// sockets marked with one of skipMarks (the agent's own) are left out.
func Start(nsPath string, h Handler, skipMarks ...uint32) (*Sniffer, error) {
	c, err := Listen(nsPath, skipMarks...)
	if err != nil {
		return nil, err
	}
	s := &Sniffer{capt: c, tr: NewTracker(h), stop: make(chan struct{})}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		c.Run(s.packet)
	}()
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case now := <-t.C:
				s.tr.Sweep(now)
			}
		}
	}()
	return s, nil
}

func (s *Sniffer) packet(pkt []byte, truncated bool, now time.Time) {
	if truncated {
		s.mu.Lock()
		s.truncated++
		s.mu.Unlock()
		return
	}
	seg, err := ParseSegment(pkt)
	if err != nil {
		s.mu.Lock()
		s.malformed++
		s.mu.Unlock()
		return
	}
	s.tr.Segment(seg, now)
}

// Watch adds port to the ports watched. New connections to it are
// followed from their SYN.
func (s *Sniffer) Watch(port uint16) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if slices.Contains(s.ports, port) {
		return nil
	}
	ports := append(slices.Clone(s.ports), port)
	if err := s.capt.SetPorts(ports); err != nil {
		return err
	}
	s.ports = ports
	return nil
}

// Unwatch stops watching port and ends the connections to it followed.
func (s *Sniffer) Unwatch(port uint16) error {
	s.mu.Lock()
	ports := slices.DeleteFunc(slices.Clone(s.ports), func(p uint16) bool { return p == port })
	err := s.capt.SetPorts(ports)
	if err == nil {
		s.ports = ports
	}
	s.mu.Unlock()
	s.tr.CloseWhere(func(_, dst netip.AddrPort) bool { return dst.Port() == port })
	return err
}

// Watching reports whether port is watched.
func (s *Sniffer) Watching(port uint16) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.ports, port)
}

// SnifferStats is what a Sniffer saw.
type SnifferStats struct {
	Stats
	Packets, Drops, Truncated, Malformed uint64
	Flows                                int
}

// Stats returns the sniffer's counts so far.
func (s *Sniffer) Stats() SnifferStats {
	p, d := s.capt.Stats()
	s.mu.Lock()
	defer s.mu.Unlock()
	return SnifferStats{Stats: s.tr.Stats(), Packets: p, Drops: d, Truncated: s.truncated, Malformed: s.malformed, Flows: s.tr.Flows()}
}

// Close stops the capture and ends every connection followed.
func (s *Sniffer) Close() error {
	close(s.stop)
	err := s.capt.Close()
	s.wg.Wait()
	s.tr.CloseWhere(func(_, _ netip.AddrPort) bool { return true })
	return err
}
