package protocol

import (
	"time"

	"github.com/tether-dev/tether/internal/policy"
)

// Grant is what tether-operator tells an agent about a session it proxies:
// who the user is, as the Kubernetes API server authenticated them, what
// they target, and what they may not do. The agent enforces it whatever
// the client sends afterwards: only the operator holds the agent's token,
// and it writes the Hello itself.
type Grant struct {
	User   string   `json:"user"`
	Groups []string `json:"groups,omitempty"`
	// Namespace, Target ("deployment/api") and Pod name what the session
	// uses, for listings and messages.
	Namespace string `json:"namespace,omitempty"`
	Target    string `json:"target,omitempty"`
	Pod       string `json:"pod,omitempty"`
	// Refuse maps each action the user may not take (ActionMirror,
	// ActionSteal) to the message they get when they try.
	Refuse map[string]string `json:"refuse,omitempty"`
	// Policies are the rules of the platform team's policies that select
	// the session's target, in order; the agent enforces them whatever
	// the client asks (AdminPolicies replaces them while it runs).
	Policies []policy.Rules `json:"policies,omitempty"`
	// Names maps addresses to the cluster DNS names of what is behind them
	// (a Service's ClusterIP and its pods' IPs): the policies' hostname
	// rules hold for them even when the program dials an address.
	Names map[string][]string `json:"names,omitempty"`
}

// Who is the grant's user, "" for a nil grant (a direct session).
func (g *Grant) Who() string {
	if g == nil {
		return ""
	}
	return g.User
}

// Actions a Grant can refuse.
const (
	ActionMirror = "mirror"
	ActionSteal  = "steal"
)

// Refusal returns the message for action, or "" when it is allowed (a nil
// Grant allows everything: a direct session's user could start the agent).
func (g *Grant) Refusal(action string) string {
	if g == nil {
		return ""
	}
	return g.Refuse[action]
}

// Admin channel ops (AdminRequest.Op).
const (
	// AdminSessions lists the agent's sessions.
	AdminSessions = "sessions"
	// AdminKill ends every session of Run (or the one SessionID) for
	// good, telling its client Reason.
	AdminKill = "kill"
	// AdminPolicies replaces the Policies and Names of the session
	// SessionID (a policy was edited): what they now refuse is refused
	// from then on, and its running subscriptions and connections that
	// they refuse are ended.
	AdminPolicies = "policies"
)

// AdminRequest is one request on an admin channel (Hello.Admin); each is
// answered by one AdminResponse, in order.
type AdminRequest struct {
	Op        string `json:"op"`
	Run       string `json:"run,omitempty"`
	SessionID string `json:"session_id,omitempty"`
	Reason    string `json:"reason,omitempty"`
	// Audit (AdminSessions) is set by the operator's audit trail: the
	// agent then knows which ends it has reported, and an idle agent
	// waits a little for the last ones to be read before it exits.
	Audit bool `json:"audit,omitempty"`
	// Policies and Names are AdminPolicies' new rules.
	Policies []policy.Rules      `json:"policies,omitempty"`
	Names    map[string][]string `json:"names,omitempty"`
}

// AdminResponse answers an AdminRequest.
type AdminResponse struct {
	Error    string        `json:"error,omitempty"`
	Sessions []SessionInfo `json:"sessions,omitempty"`
	// Ended are sessions of the operator that ended lately (the last ten
	// minutes), with their refusals: an audit trail that a poll slower
	// than a session does not miss.
	Ended  []SessionInfo `json:"ended,omitempty"`
	Killed int           `json:"killed,omitempty"`
	// Updated is how many sessions AdminPolicies changed.
	Updated int `json:"updated,omitempty"`
}

// SessionInfo describes one agent session.
type SessionInfo struct {
	ID     string `json:"id"`
	Run    string `json:"run,omitempty"`
	Client string `json:"client,omitempty"`
	Grant  *Grant `json:"grant,omitempty"`
	// Container is the target container the session is in.
	Container string    `json:"container,omitempty"`
	Started   time.Time `json:"started"`
	// Connected is false while the session waits for its client to
	// reconnect.
	Connected bool `json:"connected"`
	// Ended is when it ended (zero: it runs).
	Ended         time.Time          `json:"ended,omitzero"`
	Subscriptions []SubscriptionInfo `json:"subscriptions,omitempty"`
	// Refused lists the session's latest refused actions (at most
	// MaxRefusals), oldest first.
	Refused []Refusal `json:"refused,omitempty"`
}

// SubscriptionInfo is one port a session receives the traffic of.
type SubscriptionInfo struct {
	Port   uint16 `json:"port"`
	Mode   string `json:"mode"`
	Filter string `json:"filter,omitempty"`
}

// Refusal is one action an agent refused a session.
type Refusal struct {
	Time   time.Time `json:"time"`
	Action string    `json:"action"`
	Detail string    `json:"detail"`
	// Policy and Rule name what refused it when a policy did.
	Policy string `json:"policy,omitempty"`
	Rule   string `json:"rule,omitempty"`
	// Count is how many times the session was refused this (the same
	// policy and rule) since it was first recorded.
	Count int `json:"count,omitempty"`
}

// MaxRefusals is how many refusals a SessionInfo keeps.
const MaxRefusals = 16
