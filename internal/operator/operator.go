// Package operator is tether-operator's logic: it opens sessions for
// users it knows as the Kubernetes API server authenticated them, checks
// what they may do with RBAC on targets.tether.dev, starts and reuses the
// agents (in its own namespace, out of its users' reach), proxies each
// session's stream to its agent with a Grant the agent enforces, and
// lists and ends sessions. The API server glue is in operator/apiserver;
// cmd/tether-operator runs both under controller-runtime's manager.
package operator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/tether-dev/tether/internal/agenttls"
	"github.com/tether-dev/tether/internal/kube"
)

// Operator serves the sessions of tether's API.
type Operator struct {
	// Client and Dynamic act with the operator's own rights.
	Client  kubernetes.Interface
	Dynamic dynamic.Interface
	// Namespace is the operator's: its agents run there.
	Namespace string
	// Agent describes the agents it starts (image, linger...); Namespace,
	// PerNode, ListenAll and Audited are set by the operator.
	Agent kube.AgentOptions
	// Authorizer decides RBAC questions (the API server's delegating
	// authorizer: SubjectAccessReviews, cached).
	Authorizer authorizer.Authorizer
	// Events records Events on targets; nil records none.
	Events record.EventRecorder
	Log    *slog.Logger
	// DNS is the cluster's DNS, for targetless agents (nil: targetless
	// sessions are refused).
	DNS *ClusterDNS
	// Splits reads and writes QueueSplits (queues.tether.dev), uncached;
	// nil: queue splitting is refused.
	Splits client.Client
	// Policies reads Policies, ClusterPolicies (policies.tether.dev),
	// Services and EndpointSlices, cached; nil: no policy applies.
	Policies client.Reader
	// OpenBroker connects to a queue's broker (nil: the real brokers).
	OpenBroker OpenBroker
	// Dial connects to an agent's address (nil: TCP).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

func (o *Operator) log() *slog.Logger {
	if o.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Log
}

func (o *Operator) agentOptions() kube.AgentOptions {
	a := o.Agent
	a.Namespace, a.PerNode, a.ListenAll, a.Audited = o.Namespace, true, true, true
	return a
}

func (o *Operator) resolver() *kube.Resolver {
	return &kube.Resolver{Client: o.Client, Dynamic: o.Dynamic}
}

// agentDialTimeout bounds how long a session waits for a new agent to
// listen once its container runs.
const agentDialTimeout = 10 * time.Second

// dial connects to the agent at addr, retrying while a new one starts
// listening, in TLS keyed by its token (agenttls): the session crosses
// the pod network.
func (o *Operator) dial(ctx context.Context, addr, token string) (net.Conn, error) {
	dial := o.Dial
	if dial == nil {
		dial = func(ctx context.Context, addr string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", addr)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, agentDialTimeout)
	defer cancel()
	for {
		c, err := dial(ctx, addr)
		if err == nil {
			if token == "" {
				return c, nil
			}
			tc := agenttls.Client(c, token)
			if err = tc.HandshakeContext(ctx); err == nil {
				return tc, nil
			}
			c.Close()
			if errors.Is(err, agenttls.ErrNotThatAgent) {
				return nil, fmt.Errorf("connecting to the agent at %s: %w", addr, err)
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("connecting to the agent at %s: %w", addr, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
