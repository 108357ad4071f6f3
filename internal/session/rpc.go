package session

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"

	"github.com/tether-dev/tether/internal/protocol"
)

// rpcClient sends small requests (stat, readlink, readdir, subscribe...)
// over one long-lived OpRPC stream, tagged with ids, instead of opening a
// stream per request.
type rpcClient struct {
	s *Session

	mu      sync.Mutex
	st      protocol.Stream
	pending map[uint64]chan protocol.Response
	next    uint64

	wmu sync.Mutex
}

func (s *Session) useRPC() bool {
	s.muxMu.Lock()
	defer s.muxMu.Unlock()
	return slices.Contains(s.welcome.Capabilities, protocol.CapRPC)
}

// stream returns the call stream, opening it (and its reader) if needed.
func (c *rpcClient) stream(ctx context.Context) (protocol.Stream, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st != nil {
		return c.st, nil
	}
	st, err := c.s.openStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("the connection to the agent is gone: %w", syscallErr(err))
	}
	if err := protocol.WriteFrame(st, protocol.Request{Op: protocol.OpRPC}); err != nil {
		st.Close()
		return nil, syscallErr(err)
	}
	c.st = st
	if c.pending == nil {
		c.pending = map[uint64]chan protocol.Response{}
	}
	go c.read(st)
	return st, nil
}

// read delivers replies until the stream fails, then fails what is pending.
func (c *rpcClient) read(st protocol.Stream) {
	for {
		var r protocol.RPCReply
		if err := protocol.ReadFrame(st, &r); err != nil {
			c.mu.Lock()
			if c.st == st {
				c.st = nil
			}
			for id, ch := range c.pending {
				ch <- protocol.Response{Errno: int(syscall.ENETDOWN), Error: "the connection to the agent is gone: " + err.Error()}
				delete(c.pending, id)
			}
			c.mu.Unlock()
			st.Close()
			return
		}
		c.mu.Lock()
		ch, ok := c.pending[r.ID]
		delete(c.pending, r.ID)
		c.mu.Unlock()
		if ok {
			ch <- r.Resp
		}
	}
}

func (c *rpcClient) call(ctx context.Context, req protocol.Request) (protocol.Response, error) {
	st, err := c.stream(ctx)
	if err != nil {
		return protocol.Response{}, err
	}
	ch := make(chan protocol.Response, 1)
	c.mu.Lock()
	c.next++
	id := c.next
	c.pending[id] = ch
	c.mu.Unlock()
	c.wmu.Lock()
	err = protocol.WriteFrame(st, protocol.RPCCall{ID: id, Req: req})
	c.wmu.Unlock()
	if err != nil {
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		st.Close() // the reader fails the rest and a new stream opens next time
		return protocol.Response{}, syscallErr(err)
	}
	select {
	case resp := <-ch:
		return resp, resp.Err()
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.pending, id)
		c.mu.Unlock()
		return protocol.Response{}, &protocol.RemoteError{Errno: syscall.ETIMEDOUT, Msg: ctx.Err().Error()}
	}
}
