package netfilter

import (
	"fmt"
	"sync"
)

// Fake is an in-memory Redirector for tests.
type Fake struct {
	mu     sync.Mutex
	Rules  map[uint16]uint16 // port -> toPort
	Closed bool
	// Err, when set, is returned by Redirect.
	Err error
}

// NewFake returns an empty Fake.
func NewFake() *Fake { return &Fake{Rules: map[uint16]uint16{}} }

func (f *Fake) Redirect(port, toPort uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.Closed {
		return fmt.Errorf("redirector closed")
	}
	if f.Err != nil {
		return f.Err
	}
	f.Rules[port] = toPort
	return nil
}

func (f *Fake) Unredirect(port uint16) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.Rules, port)
	return nil
}

func (f *Fake) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Rules = map[uint16]uint16{}
	f.Closed = true
	return nil
}

// IsClosed reports whether Close was called.
func (f *Fake) IsClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.Closed
}

// Ports returns a copy of the current rules.
func (f *Fake) Ports() map[uint16]uint16 {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[uint16]uint16, len(f.Rules))
	for k, v := range f.Rules {
		out[k] = v
	}
	return out
}
