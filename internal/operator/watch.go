package operator

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/protocol"
)

// Watcher turns what the agents report into the audit trail: an Event on
// the target (and a log line) when a session ends on a pod or is refused
// an action (its start is recorded by the replica that opens it). Only the leader runs it (the Events would double).
type Watcher struct {
	O *Operator
	// Since is when the operator started: agents made before it are
	// known when first polled, later ones are new.
	Since time.Time

	mu      sync.Mutex
	agents  map[string]*agentState // by agent pod name
	started time.Time              // the first poll
	memos   policyMemos
}

// agentState is what the watcher last saw of one agent.
type agentState struct {
	sessions map[string]protocol.SessionInfo // live, by session ID
	refused  map[string]time.Time            // latest refusal recorded, by session ID
	ended    map[string]bool                 // ends recorded
}

// Observe polls agent pod p (nil: the pod named name is gone) and records
// what changed since the last poll: sessions that ended (the agent keeps
// the lately ended ones, so none shorter than a poll is missed) and
// refusals. The first poll of an agent that ran before the watcher only
// learns what it has (after a restart of the operator, that is not new).
func (w *Watcher) Observe(ctx context.Context, name string, p *corev1.Pod) error {
	var live, ended []protocol.SessionInfo
	if p != nil {
		resp, err := w.O.admin(ctx, p, protocol.AdminRequest{Op: protocol.AdminSessions, Audit: true})
		if err != nil {
			return err // unknown, not empty: nothing ended
		}
		for _, si := range resp.Sessions {
			if si.Grant != nil {
				live = append(live, si)
			}
		}
		ended = resp.Ended
	}
	w.mu.Lock()
	if w.agents == nil {
		w.agents = map[string]*agentState{}
		w.started = w.Since
		if w.started.IsZero() {
			w.started = time.Now()
		}
	}
	st := w.agents[name]
	seed := st == nil && (p == nil || !p.CreationTimestamp.After(w.started))
	if st == nil {
		st = &agentState{sessions: map[string]protocol.SessionInfo{}, refused: map[string]time.Time{}, ended: map[string]bool{}}
	}
	if p == nil {
		delete(w.agents, name)
	} else {
		w.agents[name] = st
	}
	w.mu.Unlock()
	// refusals records si's refusals not recorded yet.
	refusals := func(si protocol.SessionInfo) {
		for _, r := range si.Refused {
			if !r.Time.After(st.refused[si.ID]) {
				continue
			}
			st.refused[si.ID] = r.Time
			if seed {
				continue
			}
			w.O.log().Warn("refused", "user", si.Grant.User, "namespace", si.Grant.Namespace, "target", si.Grant.Target, "pod", si.Grant.Pod, "session", runOf(si), "action", r.Action, "policy", r.Policy, "rule", r.Rule, "why", r.Detail)
			w.record(ctx, si, corev1.EventTypeWarning, ReasonRefused, "%s", truncate(r.Detail))
		}
	}
	if p != nil {
		w.enforcePolicies(ctx, p, live)
	}
	prev := st.sessions
	st.sessions = map[string]protocol.SessionInfo{}
	for _, si := range live {
		refusals(si)
		st.sessions[si.ID] = si
	}
	seen := map[string]bool{}
	for _, si := range ended {
		if si.Grant == nil {
			continue
		}
		seen[si.ID] = true
		if st.ended[si.ID] {
			continue
		}
		st.ended[si.ID] = true
		refusals(si)
		if !seed {
			w.record(ctx, si, corev1.EventTypeNormal, ReasonEnded, "session %s of %s ended on pod %s after %v", runOf(si), si.Grant.User, si.Grant.Pod, si.Ended.Sub(si.Started).Round(time.Second))
		}
	}
	for id := range st.ended {
		if !seen[id] {
			delete(st.ended, id) // out of the agent's log: no longer needed
		}
	}
	if p == nil && !seed {
		// The agent is gone: what it still ran ended with it.
		for id, si := range prev {
			if !st.ended[id] {
				w.record(ctx, si, corev1.EventTypeNormal, ReasonEnded, "session %s of %s ended on pod %s: its agent %s is gone", runOf(si), si.Grant.User, si.Grant.Pod, name)
			}
		}
	}
	return nil
}

func runOf(si protocol.SessionInfo) string {
	if si.Run != "" {
		return si.Run
	}
	return si.ID
}

func (w *Watcher) record(ctx context.Context, si protocol.SessionInfo, kind, reason, format string, args ...any) {
	spec, err := kube.ParseTarget(si.Grant.Target)
	if err != nil {
		spec = kube.TargetSpec{Kind: kube.KindPod, Name: si.Grant.Pod}
	}
	if reason != ReasonRefused {
		w.O.log().Info(reason, "user", si.Grant.User, "namespace", si.Grant.Namespace, "target", si.Grant.Target, "pod", si.Grant.Pod, "session", runOf(si), "agent_session", si.ID)
	}
	w.O.event(ctx, si.Grant.Namespace, spec, kind, reason, format, args...)
}
