//go:build !linux

package sniff

import (
	"errors"
	"time"
)

// Capture needs Linux packet sockets.
type Capture struct{}

var errNotLinux = errors.New("sniff: packet capture needs Linux")

// Listen fails: packet capture needs Linux.
func Listen(nsPath string, skipMarks ...uint32) (*Capture, error) { return nil, errNotLinux }

func (c *Capture) SetPorts(ports []uint16) error { return errNotLinux }
func (c *Capture) Run(fn func(pkt []byte, truncated bool, now time.Time)) error {
	return errNotLinux
}
func (c *Capture) Stats() (packets, drops uint64) { return 0, 0 }
func (c *Capture) Close() error                   { return nil }
