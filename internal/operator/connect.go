package operator

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/protocol"
	"github.com/tether-dev/tether/internal/splice"
)

var targetsResource = schema.GroupResource{Group: v1alpha1.GroupName, Resource: v1alpha1.ResourceTargets}

// Connect checks and prepares one targets/connect request by u for pod
// opts.Pod of target name in ns: RBAC, the pod, its node's agent. The
// handler it returns upgrades the request and proxies the session.
func (o *Operator) Connect(ctx context.Context, u user.Info, ns, name string, opts *v1alpha1.TargetConnectOptions) (http.Handler, error) {
	spec, err := kube.ParseResourceName(name)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	spec.Container = opts.Container
	ok, err := o.may(ctx, u, v1alpha1.VerbUse, ns, name)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if !ok {
		msg := refusal(u, v1alpha1.VerbUse, ns, name)
		o.refused(ctx, u, ns, spec, v1alpha1.VerbUse, msg)
		return nil, apierrors.NewForbidden(targetsResource, name, errors.New(msg))
	}
	grant := &protocol.Grant{User: u.GetName(), Groups: u.GetGroups(), Namespace: ns, Target: spec.String(), Pod: opts.Pod}
	for _, av := range actionVerbs {
		ok, err := o.may(ctx, u, av.verb, ns, name)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		if !ok {
			if grant.Refuse == nil {
				grant.Refuse = map[string]string{}
			}
			grant.Refuse[av.action] = refusal(u, av.verb, ns, name)
		}
	}
	resolved, agentOpts, err := o.place(ctx, ns, spec, opts.Pod)
	if err != nil {
		return nil, err
	}
	what := "targetless sessions of " + ns
	if resolved.Pod != nil {
		grant.Pod = resolved.Pod.Name
		what = "pod " + ns + "/" + resolved.Pod.Name
	}
	grant.Policies, grant.Names, err = o.sessionPolicies(ctx, ns, spec, resolved.Pod)
	if err != nil {
		msg := fmt.Sprintf("the policies of %s in %s: %v", spec, ns, err)
		o.refused(ctx, u, ns, spec, "policies", msg)
		return nil, apierrors.NewServiceUnavailable(msg)
	}
	agent, err := (&kube.AgentManager{Client: o.Client}).Ensure(ctx, resolved, agentOpts)
	if err != nil {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("starting the agent for %s: %v", what, err))
	}
	if agent.PodIP == "" {
		return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("the agent pod %s/%s has no IP yet: try again", agent.Namespace, agent.Pod))
	}
	addr := net.JoinHostPort(agent.PodIP, strconv.Itoa(agent.Port))
	c := &conn{o: o, user: u, ns: ns, spec: spec, grant: grant, agent: agent, addr: addr}
	return http.HandlerFunc(c.serve), nil
}

// place resolves what a session of target spec in ns runs in and the
// agent that serves it: the chosen pod's node agent, or for a targetless
// session the namespace's targetless agent, which runs in the operator's
// namespace with the DNS of ns's pods.
func (o *Operator) place(ctx context.Context, ns string, spec kube.TargetSpec, pod string) (*kube.Resolved, kube.AgentOptions, error) {
	opts := o.agentOptions()
	if spec.Kind == kube.KindTargetless {
		if o.DNS == nil {
			return nil, opts, apierrors.NewServiceUnavailable("this tether-operator cannot start targetless agents: it could not read the cluster's DNS from its pod's /etc/resolv.conf (see its log); run targetless sessions with --no-operator meanwhile")
		}
		opts.TargetlessDNS = o.DNS.For(ns)
		return &kube.Resolved{Spec: spec, Namespace: ns}, opts, nil
	}
	resolved, err := o.resolver().ResolvePod(ctx, ns, spec, pod)
	if err != nil {
		return nil, opts, apierrors.NewBadRequest(fmt.Sprintf("targets/%s in %s: %v", spec.ResourceName(), ns, err))
	}
	return resolved, opts, nil
}

// conn is one proxied session connection.
type conn struct {
	o     *Operator
	user  user.Info
	ns    string
	spec  kube.TargetSpec
	grant *protocol.Grant
	agent *kube.Agent
	addr  string
}

// IsUpgrade reports whether req asks for tether's stream.
func IsUpgrade(req *http.Request) bool {
	return strings.EqualFold(req.Header.Get("Upgrade"), v1alpha1.UpgradeProtocol) &&
		strings.Contains(strings.ToLower(req.Header.Get("Connection")), "upgrade")
}

func (c *conn) serve(w http.ResponseWriter, req *http.Request) {
	if !IsUpgrade(req) {
		http.Error(w, "targets/connect upgrades the connection to "+v1alpha1.UpgradeProtocol+": send Connection: Upgrade and Upgrade: "+v1alpha1.UpgradeProtocol, http.StatusBadRequest)
		return
	}
	ac, err := c.o.dial(req.Context(), c.addr, c.agent.Token)
	if err != nil {
		http.Error(w, fmt.Sprintf("the agent %s/%s does not answer: %v; try again (tether-operator replaces an agent that stays silent)", c.agent.Namespace, c.agent.Pod, err), http.StatusServiceUnavailable)
		return
	}
	hj, ok := w.(http.Hijacker)
	if !ok {
		ac.Close()
		http.Error(w, "this connection cannot be upgraded (HTTP/2?): connect with HTTP/1.1", http.StatusInternalServerError)
		return
	}
	raw, brw, err := hj.Hijack()
	if err != nil {
		ac.Close()
		c.o.log().Warn("hijacking a connect request", "err", err)
		return
	}
	brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + v1alpha1.UpgradeProtocol + "\r\n\r\n")
	if err := brw.Flush(); err != nil {
		raw.Close()
		ac.Close()
		return
	}
	client := &bufferedConn{Conn: raw, r: brw.Reader}
	start := time.Now()
	hello, welcome, err := relayHandshake(client, ac, c.rewrite)
	log := c.o.log().With("user", c.user.GetName(), "namespace", c.ns, "target", c.spec.String(), "pod", c.grant.Pod, "agent", c.agent.Pod, "run", hello.Run)
	if err != nil {
		log.Warn("session handshake failed", "err", err)
		client.Close()
		ac.Close()
		return
	}
	log.Info("session connected", "session", welcome.SessionID, "resumed", welcome.Resumed, "client", hello.Client, "handshake", time.Since(start).Round(time.Microsecond).String())
	if !welcome.Resumed {
		// The audit trail's start, from the replica that opened it (the
		// leader's watcher records the ends and refusals).
		run := hello.Run
		if run == "" {
			run = welcome.SessionID
		}
		c.o.event(req.Context(), c.ns, c.spec, corev1.EventTypeNormal, ReasonStarted, "%s started session %s on pod %s (client %s)", c.user.GetName(), run, c.grant.Pod, hello.Client)
	}
	splice.Join(client, asHalfCloser(ac))
	log.Info("session disconnected", "session", welcome.SessionID, "after", time.Since(start).Round(time.Millisecond).String())
}

// rewrite turns the client's hello into the one the agent gets: the
// operator's token, the container the operator resolved, the grant.
// Nothing the client sends there survives.
func (c *conn) rewrite(h *protocol.Hello) {
	h.Token = c.agent.Token
	h.Target = c.agent.Target
	h.Grant = c.grant
	h.Admin = false
}

// relayHandshake reads the client's Hello, passes it (rewritten) to the
// agent and the agent's Welcome back. Version negotiation is the agent's.
func relayHandshake(client, agent net.Conn, rewrite func(*protocol.Hello)) (protocol.Hello, protocol.Welcome, error) {
	deadline := time.Now().Add(protocol.HandshakeTimeout)
	client.SetDeadline(deadline)
	agent.SetDeadline(deadline)
	defer client.SetDeadline(time.Time{})
	defer agent.SetDeadline(time.Time{})
	var h protocol.Hello
	var w protocol.Welcome
	if err := protocol.ReadFrame(client, &h); err != nil {
		return h, w, fmt.Errorf("reading the client's hello: %w", err)
	}
	if h.Magic != protocol.Magic {
		protocol.WriteFrame(client, protocol.Welcome{Version: protocol.Version, Error: "not a tether client (bad magic)"})
		return h, w, errors.New("not a tether client")
	}
	rewrite(&h)
	if err := protocol.WriteFrame(agent, h); err != nil {
		return h, w, fmt.Errorf("sending the hello to the agent: %w", err)
	}
	if err := protocol.ReadFrame(agent, &w); err != nil {
		protocol.WriteFrame(client, protocol.Welcome{Version: protocol.Version, Error: fmt.Sprintf("the agent did not answer the handshake (%v): try again", err)})
		return h, w, fmt.Errorf("reading the agent's welcome: %w", err)
	}
	if err := protocol.WriteFrame(client, w); err != nil {
		return h, w, fmt.Errorf("passing the welcome on: %w", err)
	}
	if w.Error != "" {
		return h, w, fmt.Errorf("the agent refused the session: %s", w.Error)
	}
	return h, w, nil
}

// bufferedConn is a hijacked connection whose first bytes may sit in
// the server's reader.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader
}

func (b *bufferedConn) Read(p []byte) (int, error) {
	if b.r != nil && b.r.Buffered() > 0 {
		return b.r.Read(p)
	}
	return b.Conn.Read(p)
}

func (b *bufferedConn) CloseWrite() error {
	if cw, ok := b.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return b.Conn.Close()
}

// asHalfCloser gives a connection without CloseWrite one that closes it.
func asHalfCloser(c net.Conn) splice.Conn {
	if hc, ok := c.(splice.Conn); ok {
		return hc
	}
	return &bufferedConn{Conn: c}
}
