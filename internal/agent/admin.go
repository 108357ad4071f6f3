package agent

import (
	"crypto/subtle"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/tether-dev/tether/internal/protocol"
)

// endedFor is how long an agent remembers a session an administrator
// ended: its client, reconnecting within it, is told why.
const endedFor = 10 * time.Minute

// endedSession is a session an administrator ended.
type endedSession struct {
	reason string
	at     time.Time
}

// subscribeAction is the Grant action a subscribe request needs.
func subscribeAction(req protocol.Request) string {
	if req.Mode == protocol.ModeSteal {
		return protocol.ActionSteal
	}
	return protocol.ActionMirror
}

// info describes the server's sessions.
func (s *Server) info() []protocol.SessionInfo {
	s.mu.Lock()
	sessions := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		sessions = append(sessions, ss)
	}
	s.mu.Unlock()
	var subs map[*session][]protocol.SubscriptionInfo
	if in := s.incomingIfUsed(); in != nil {
		subs = in.describe()
	}
	out := make([]protocol.SessionInfo, 0, len(sessions))
	for _, ss := range sessions {
		out = append(out, s.infoOf(ss, subs[ss]))
	}
	slices.SortFunc(out, func(a, b protocol.SessionInfo) int { return a.Started.Compare(b.Started) })
	return out
}

func (s *Server) infoOf(ss *session, subs []protocol.SubscriptionInfo) protocol.SessionInfo {
	grant := ss.grant
	if grant != nil {
		// With the policies it has now (an edit replaces the grant's).
		g := *grant
		g.Policies, g.Names = nil, nil
		if p := ss.policy(); p != nil {
			g.Policies, g.Names = p.rules, p.rawNames
		}
		grant = &g
	}
	return protocol.SessionInfo{
		ID: ss.id, Run: ss.run, Client: ss.client, Grant: grant, Container: s.ID,
		Started: ss.start, Connected: ss.attached(), Subscriptions: subs, Refused: ss.refusals(),
	}
}

// describe is one session's info.
func (s *Server) describe(ss *session) protocol.SessionInfo {
	var subs []protocol.SubscriptionInfo
	if in := s.incomingIfUsed(); in != nil {
		subs = in.describe()[ss]
	}
	return s.infoOf(ss, subs)
}

// Ended sessions are kept for the operator's audit trail for endedFor, at
// most maxEndedLog of them: a session shorter than the operator's poll
// still gets its end and refusals recorded.
const maxEndedLog = 512

// recordEnded keeps info of an ended session. Called with s.mu held.
func (s *Server) recordEnded(info protocol.SessionInfo) {
	cut := 0
	for cut < len(s.endedLog) && (time.Since(s.endedLog[cut].Ended) > endedFor || len(s.endedLog)-cut >= maxEndedLog) {
		cut++
	}
	s.endedLog = append(s.endedLog[cut:], info)
}

// endedInfo returns the sessions that ended lately.
func (s *Server) endedInfo() []protocol.SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.endedLog)
}

// kill ends, for good, the sessions of run (or the one named id): each
// client is told reason, and a reconnect is refused with it. It returns
// how many it ended.
func (s *Server) kill(run, id, reason string) int {
	s.mu.Lock()
	var victims []*session
	for _, ss := range s.sessions {
		if (id != "" && ss.id == id) || (run != "" && ss.run == run) {
			victims = append(victims, ss)
		}
	}
	if s.ended == nil {
		s.ended = map[string]endedSession{}
	}
	now := time.Now()
	for sid, e := range s.ended {
		if now.Sub(e.at) > endedFor {
			delete(s.ended, sid)
		}
	}
	for _, ss := range victims {
		s.ended[ss.id] = endedSession{reason: reason, at: now}
	}
	s.mu.Unlock()
	for _, ss := range victims {
		if st, err := ss.open(); err == nil {
			st.SetWriteDeadline(time.Now().Add(2 * time.Second))
			protocol.WriteFrame(st, protocol.Incoming{Ended: reason})
			st.Close()
		}
		ss.markClosing()
		if m := ss.currentMux(); m != nil {
			// The notice first: the client reads it before the close.
			time.AfterFunc(200*time.Millisecond, func() { m.Close() })
		}
		s.endSession(ss)
		s.Log.Info("session killed", "session", ss.id, "run", ss.run, "user", ss.grant.Who(), "reason", reason)
	}
	return len(victims)
}

// describe returns each session's subscriptions.
// subscriptionsOf are ss's subscriptions, copied.
func (in *incoming) subscriptionsOf(ss *session) []subscription {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []subscription
	for _, subs := range in.ports {
		for _, sub := range subs {
			if sub.sess == ss {
				out = append(out, *sub)
			}
		}
	}
	return out
}

func (in *incoming) describe() map[*session][]protocol.SubscriptionInfo {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := map[*session][]protocol.SubscriptionInfo{}
	for port, subs := range in.ports {
		for _, sub := range subs {
			info := protocol.SubscriptionInfo{Port: port, Mode: sub.mode}
			if sub.filter != nil {
				info.Filter = sub.filter.String()
			}
			out[sub.sess] = append(out[sub.sess], info)
		}
	}
	for _, infos := range out {
		slices.SortFunc(infos, func(a, b protocol.SubscriptionInfo) int { return int(a.Port) - int(b.Port) })
	}
	return out
}

// tokenOK reports whether token is the agent's.
func (n *Node) tokenOK(token string) bool {
	return n.Token == "" || subtle.ConstantTimeCompare([]byte(token), []byte(n.Token)) == 1
}

// serveAdmin answers AdminRequests on conn until it closes.
func (n *Node) serveAdmin(conn net.Conn) {
	defer conn.Close()
	for {
		var req protocol.AdminRequest
		if err := protocol.ReadFrame(conn, &req); err != nil {
			return
		}
		var resp protocol.AdminResponse
		var audited time.Time // the audit trail has read the sessions as they were then
		switch req.Op {
		case protocol.AdminSessions:
			at := time.Now() // what ends after this is in the next poll's
			resp.Sessions = []protocol.SessionInfo{}
			for _, s := range n.all() {
				resp.Sessions = append(resp.Sessions, s.info()...)
				resp.Ended = append(resp.Ended, s.endedInfo()...)
			}
			if req.Audit {
				audited = at
			}
		case protocol.AdminPolicies:
			for _, s := range n.all() {
				k, err := s.updatePolicy(req.SessionID, req.Policies, req.Names)
				resp.Updated += k
				if err != nil {
					resp.Error = err.Error()
				}
			}
		case protocol.AdminKill:
			if req.Run == "" && req.SessionID == "" {
				resp.Error = "kill: name a run or a session"
				break
			}
			for _, s := range n.all() {
				resp.Killed += s.kill(req.Run, req.SessionID, req.Reason)
			}
		default:
			resp.Error = fmt.Sprintf("unknown admin request %q: the operator is newer than this agent", req.Op)
		}
		// The poll counts as read before the answer is written, so that
		// whoever has the answer sees Unreported account for it; a failed
		// write takes it back.
		var before time.Time
		if !audited.IsZero() {
			n.mu.Lock()
			before, n.polled = n.polled, audited
			n.mu.Unlock()
		}
		if err := protocol.WriteFrame(conn, resp); err != nil {
			if !audited.IsZero() {
				n.mu.Lock()
				if n.polled.Equal(audited) {
					n.polled = before
				}
				n.mu.Unlock()
			}
			return
		}
	}
}
