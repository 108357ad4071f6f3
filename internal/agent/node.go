package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/tether-dev/tether/internal/protocol"
)

// Node serves several targets from one agent: its own (Default) and, when
// Open is set, any container of its node that a session names in
// Hello.Target (an agent per node rather than per pod: the replicas of a
// workload on one node share it, and start-up on N replicas does not wait
// for N pods). Each target has a Server of its own, with its own
// sessions, redirect table and drain; a target that exits (Exited) ends
// its sessions only.
type Node struct {
	// Default serves a Hello with no Target or with DefaultID.
	Default   *Server
	DefaultID string
	// Open finds a container on this node (by its ID, containerd://...)
	// and returns a server for it; nil: the agent serves Default only.
	Open func(id string) (*Server, error)
	Log  *slog.Logger
	// Token, when set, must be presented on the admin channel
	// (Hello.Admin); the servers check their own for sessions.
	Token string
	// Audited: tether-operator's audit trail polls this agent (Unreported
	// counts from its start, not only after a first poll).
	Audited bool

	mu      sync.Mutex
	servers map[string]*Server // opened, by container ID
	stopped bool
	polled  time.Time // the sessions as the operator's audit trail last read them (AdminSessions, Audit)
}

// errStopped refuses a session that arrives during the agent's shutdown.
var errStopped = errors.New("the agent is stopping; connect again in a moment (a new agent takes over)")

// server returns the server of container id, opening it the first time.
func (n *Node) server(id string) (*Server, error) {
	if id == "" || id == n.DefaultID {
		n.mu.Lock()
		s := n.Default
		n.mu.Unlock()
		if s == nil {
			return nil, fmt.Errorf("the agent's own target has exited: tether re-attaches to what replaces it")
		}
		return s, nil
	}
	if n.Open == nil {
		return nil, fmt.Errorf("this agent serves only its own target, not container %s: tether starts another agent for it (this one was started without --node)", id)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		return nil, errStopped
	}
	if s := n.servers[id]; s != nil {
		return s, nil
	}
	s, err := n.Open(id)
	if err != nil {
		return nil, fmt.Errorf("this agent cannot serve container %s: %w", id, err)
	}
	if s.Log == nil {
		s.Log = n.Log
	}
	s.ID = id
	if n.servers == nil {
		n.servers = map[string]*Server{}
	}
	n.servers[id] = s
	return s, nil
}

// Exited ends the server of container id ("" or DefaultID: Default), whose
// process has exited: its incoming traffic is let go at once (see
// Server.TargetExited) and its sessions end. It returns how many targets
// are left.
func (n *Node) Exited(id string) int {
	n.mu.Lock()
	var s *Server
	if id == "" || id == n.DefaultID {
		s, n.Default = n.Default, nil
	} else {
		s = n.servers[id]
		delete(n.servers, id)
	}
	left := len(n.servers)
	if n.Default != nil {
		left++
	}
	n.mu.Unlock()
	if s != nil {
		s.TargetExited()
		s.Shutdown()
	}
	return left
}

// all returns every server, Default first.
func (n *Node) all() []*Server {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*Server
	if n.Default != nil {
		out = append(out, n.Default)
	}
	for _, s := range n.servers {
		out = append(out, s)
	}
	return out
}

// Sessions is the number of sessions of every target.
func (n *Node) Sessions() int {
	total := 0
	for _, s := range n.all() {
		total += s.Sessions()
	}
	return total
}

// Unreported counts the sessions that ended since the operator's audit
// trail last read the sessions: their ends and refusals are not in it
// yet. It is 0 when nothing reads them (tether's direct mode: not
// Audited and never polled for the audit trail).
func (n *Node) Unreported() int {
	n.mu.Lock()
	polled := n.polled
	n.mu.Unlock()
	if polled.IsZero() && !n.Audited {
		return 0
	}
	k := 0
	for _, s := range n.all() {
		for _, e := range s.endedInfo() {
			if e.Ended.After(polled) {
				k++
			}
		}
	}
	return k
}

// Targets returns the IDs of the containers opened, sorted.
func (n *Node) Targets() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	var ids []string
	for id := range n.servers {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Serve accepts sessions on ln until ctx ends; then every target's server
// shuts down (in parallel: each drains its own connections).
func (n *Node) Serve(ctx context.Context, ln net.Listener) error {
	if n.Log == nil {
		n.Log = slog.New(slog.DiscardHandler)
	}
	if n.Default != nil && n.Default.Log == nil {
		n.Default.Log = n.Log
	}
	if n.Default != nil && n.Default.ID == "" {
		n.Default.ID = n.DefaultID
	}
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				n.shutdown()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accepting connections: %w", err)
		}
		go n.handleConn(ctx, conn)
	}
}

func (n *Node) shutdown() {
	n.mu.Lock()
	n.stopped = true
	n.mu.Unlock()
	var wg sync.WaitGroup
	for _, s := range n.all() {
		wg.Go(s.Shutdown)
	}
	wg.Wait()
}

// handleConn picks the server of the container the Hello names and lets
// it serve the session.
func (n *Node) handleConn(ctx context.Context, conn net.Conn) {
	var (
		srv     *Server
		ss      *session
		created bool
		admin   bool
	)
	hello, welcome, err := protocol.ServerHandshake(conn, func(h protocol.Hello) protocol.Welcome {
		if h.Admin {
			if !n.tokenOK(h.Token) {
				return protocol.Welcome{Error: "wrong or missing agent token for the admin channel"}
			}
			admin = true
			return protocol.Welcome{}
		}
		s, err := n.server(h.Target)
		if err != nil {
			return protocol.Welcome{Error: err.Error()}
		}
		srv = s
		var w protocol.Welcome
		w, ss, created = s.welcome(h)
		return w
	})
	if admin && err == nil {
		n.serveAdmin(conn)
		return
	}
	if srv == nil {
		if err == nil {
			err = errors.New("no target")
		}
		n.Log.Warn("handshake failed", "remote", conn.RemoteAddr().String(), "target", hello.Target, "err", err)
		conn.Close()
		return
	}
	srv.serveConn(ctx, conn, hello, welcome, err, ss, created)
}
