package session

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/tether-dev/tether/internal/protocol"
)

// nameCache remembers which names resolved to which addresses through the
// target's DNS, so outgoing filters written with host names can match
// connections made to addresses.
type nameCache struct {
	mu     sync.Mutex
	byAddr map[netip.Addr][]string
}

func newNameCache() *nameCache { return &nameCache{byAddr: map[netip.Addr][]string{}} }

const maxNamesPerAddr = 16

func (c *nameCache) add(a netip.Addr, name string) {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	c.mu.Lock()
	defer c.mu.Unlock()
	names := c.byAddr[a]
	for _, n := range names {
		if n == name {
			return
		}
	}
	if len(names) >= maxNamesPerAddr {
		names = names[1:]
	}
	c.byAddr[a] = append(names, name)
}

func (c *nameCache) namesOf(a netip.Addr) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.byAddr[a.Unmap()]...)
}

// record notes the A/AAAA answers of a DNS response (and the names that
// led to them through CNAMEs).
func (c *nameCache) record(msg []byte) {
	var p dnsmessage.Parser
	if _, err := p.Start(msg); err != nil {
		return
	}
	q, err := p.Question()
	if err != nil {
		return
	}
	if err := p.SkipAllQuestions(); err != nil {
		return
	}
	for {
		h, err := p.AnswerHeader()
		if err != nil {
			return
		}
		switch h.Type {
		case dnsmessage.TypeA:
			r, err := p.AResource()
			if err != nil {
				return
			}
			a := netip.AddrFrom4(r.A)
			c.add(a, h.Name.String())
			c.add(a, q.Name.String())
		case dnsmessage.TypeAAAA:
			r, err := p.AAAAResource()
			if err != nil {
				return
			}
			a := netip.AddrFrom16(r.AAAA).Unmap()
			c.add(a, h.Name.String())
			c.add(a, q.Name.String())
		default:
			if err := p.SkipAnswer(); err != nil {
				return
			}
		}
	}
}

// keepLocal reports whether a query name is answered by the local resolver.
func (s *Session) keepLocal(name string) bool {
	if s.dnsLocal.match(name) {
		return true
	}
	return !s.dnsRemote.empty() && !s.dnsRemote.match(name)
}

// answerLocally answers a query from the local resolver when dns.filter
// keeps its name local. ok is false when the query goes to the target.
func (s *Session) answerLocally(query []byte) (reply []byte, ok bool) {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		return nil, false
	}
	q, err := p.Question()
	if err != nil {
		return nil, false
	}
	if !s.keepLocal(q.Name.String()) {
		return nil, false
	}
	return localAnswer(h, q, lookupLocal), true
}

// lookupLocal resolves with this process's (unsupervised, local) resolver.
func lookupLocal(name string, typ dnsmessage.Type) ([]netip.Addr, bool) {
	network := "ip4"
	if typ == dnsmessage.TypeAAAA {
		network = "ip6"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupNetIP(ctx, network, strings.TrimSuffix(name, "."))
	if err != nil {
		return nil, false // answered as NXDOMAIN
	}
	return addrs, true
}

// localAnswer builds the response to q from lookup's result.
func localAnswer(h dnsmessage.Header, q dnsmessage.Question, lookup func(string, dnsmessage.Type) ([]netip.Addr, bool)) []byte {
	rh := dnsmessage.Header{ID: h.ID, Response: true, RecursionDesired: h.RecursionDesired, RecursionAvailable: true}
	var addrs []netip.Addr
	found := true
	if q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeAAAA {
		addrs, found = lookup(q.Name.String(), q.Type)
	}
	if !found {
		rh.RCode = dnsmessage.RCodeNameError
	}
	b := dnsmessage.NewBuilder(nil, rh)
	b.EnableCompression()
	b.StartQuestions()
	b.Question(q)
	b.StartAnswers()
	for _, a := range addrs {
		hdr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 5}
		switch {
		case q.Type == dnsmessage.TypeA && a.Unmap().Is4():
			b.AResource(hdr, dnsmessage.AResource{A: a.Unmap().As4()})
		case q.Type == dnsmessage.TypeAAAA && a.Is6() && !a.Is4In6():
			b.AAAAResource(hdr, dnsmessage.AAAAResource{AAAA: a.As16()})
		}
	}
	out, err := b.Finish()
	if err != nil {
		return nil
	}
	return out
}

// serveDNSTCP answers DNS over TCP (RFC 7766 framing) for a local resolver
// talking to the target's nameserver: filtered names locally, the rest
// through one upstream connection to the nameserver in the target.
func (s *Session) serveDNSTCP(c *net.TCPConn, server netip.AddrPort) {
	defer c.Close()
	var wmu sync.Mutex
	write := func(msg []byte) error {
		wmu.Lock()
		defer wmu.Unlock()
		var l [2]byte
		binary.BigEndian.PutUint16(l[:], uint16(len(msg)))
		_, err := c.Write(append(l[:], msg...))
		return err
	}
	var up protocol.Stream
	upDone := make(chan struct{})
	defer func() {
		if up != nil {
			// The resolver may half-close after its last query: let the
			// answers still in flight reach it.
			up.CloseWrite()
			select {
			case <-upDone:
			case <-time.After(10 * time.Second):
			}
			up.Close()
		}
	}()
	for {
		msg, err := readDNSTCP(c)
		if err != nil {
			return
		}
		if reply, ok := s.answerLocally(msg); ok {
			if reply == nil || write(reply) != nil {
				return
			}
			continue
		}
		if up == nil {
			ctx, cancel := context.WithTimeout(context.Background(), protocol.DialTimeout)
			up, err = s.dialStream(ctx, "tcp", server)
			cancel()
			if err != nil {
				s.log.Debug("dns upstream dial failed", "server", server.String(), "err", err)
				return // the resolver sees the connection close and tries the next server
			}
			go func(up protocol.Stream) {
				defer close(upDone)
				for {
					resp, err := readDNSTCP(up)
					if err != nil {
						return
					}
					s.names.record(resp)
					if write(resp) != nil {
						return
					}
				}
			}(up)
		}
		var l [2]byte
		binary.BigEndian.PutUint16(l[:], uint16(len(msg)))
		if _, err := up.Write(append(l[:], msg...)); err != nil {
			return
		}
	}
}

func readDNSTCP(r io.Reader) ([]byte, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return nil, err
	}
	msg := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}
