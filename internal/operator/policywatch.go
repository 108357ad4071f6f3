package operator

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/policy"
	"github.com/tether-dev/tether/internal/protocol"
)

// policyRefresh is how old a running session's computed policies may get
// when no policy changed (its pod's labels, the Services' addresses may
// have).
const policyRefresh = 10 * time.Second

// policyMemo is what the policies of one target (ns, target, pod) were
// last computed to be.
type policyMemo struct {
	version string // the policies' resourceVersions then
	at      time.Time
	rules   []policy.Rules
	names   map[string][]string
}

// policyMemos remembers the policies computed per target, so that a poll
// of many sessions computes each target's once.
type policyMemos struct {
	mu sync.Mutex
	m  map[string]policyMemo
}

// policiesVersion identifies the policies that may apply in ns as they
// are now: it changes with any edit.
func (o *Operator) policiesVersion(ctx context.Context, ns string) (string, error) {
	cps, ps, err := o.listPolicies(ctx, ns)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for _, p := range cps.Items {
		b.WriteString(p.Name + "@" + p.ResourceVersion + ",")
	}
	for _, p := range ps.Items {
		b.WriteString(p.Name + "@" + p.ResourceVersion + ",")
	}
	return b.String(), nil
}

// enforcePolicies gives each live session of agent pod p the policies
// that apply to it now, when they are not what it has: a policy edit
// reaches running sessions within a poll or two.
func (w *Watcher) enforcePolicies(ctx context.Context, p *corev1.Pod, live []protocol.SessionInfo) {
	o := w.O
	if o.Policies == nil {
		return
	}
	versions := map[string]string{}
	for _, si := range live {
		g := si.Grant
		ver, ok := versions[g.Namespace]
		if !ok {
			v, err := o.policiesVersion(ctx, g.Namespace)
			if err != nil {
				o.log().Warn("reading the policies", "namespace", g.Namespace, "err", err)
				return
			}
			ver, versions[g.Namespace] = v, v
		}
		key := g.Namespace + "/" + g.Target + "/" + g.Pod
		w.memos.mu.Lock()
		if w.memos.m == nil {
			w.memos.m = map[string]policyMemo{}
		}
		m, ok := w.memos.m[key]
		w.memos.mu.Unlock()
		if !ok || m.version != ver || time.Since(m.at) > policyRefresh {
			rules, names, err := w.computePolicies(ctx, g)
			if err != nil {
				// The session keeps what it has; new ones are refused.
				o.log().Warn("the policies of a running session", "namespace", g.Namespace, "target", g.Target, "session", runOf(si), "err", err)
				continue
			}
			m = policyMemo{version: ver, at: time.Now(), rules: rules, names: names}
			w.memos.mu.Lock()
			w.memos.m[key] = m
			w.memos.mu.Unlock()
		}
		if sameRules(g.Policies, m.rules) && sameNames(g.Names, m.names) {
			continue
		}
		resp, err := o.admin(ctx, p, protocol.AdminRequest{Op: protocol.AdminPolicies, SessionID: si.ID, Policies: m.rules, Names: m.names})
		if err == nil && resp.Error != "" {
			err = errorString(resp.Error)
		}
		if err != nil {
			o.log().Warn("changing the policies of a running session", "agent", p.Name, "session", runOf(si), "err", err)
			continue
		}
		names := make([]string, len(m.rules))
		for i, r := range m.rules {
			names[i] = r.Name
		}
		o.log().Info("policies of a running session changed", "user", g.User, "namespace", g.Namespace, "target", g.Target, "pod", g.Pod, "session", runOf(si), "policies", names)
	}
}

// computePolicies are the policies of a session's grant's target now.
func (w *Watcher) computePolicies(ctx context.Context, g *protocol.Grant) ([]policy.Rules, map[string][]string, error) {
	spec, err := kube.ParseTarget(g.Target)
	if err != nil {
		spec = kube.TargetSpec{Kind: kube.KindPod, Name: g.Pod}
	}
	var pod *corev1.Pod
	if g.Pod != "" {
		pod, err = w.O.Client.CoreV1().Pods(g.Namespace).Get(ctx, g.Pod, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			pod, err = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: g.Pod, Namespace: g.Namespace}}, nil
		}
		if err != nil {
			return nil, nil, err
		}
	}
	return w.O.sessionPolicies(ctx, g.Namespace, spec, pod)
}

// sameRules compares rules as the wire carries them (an empty list and
// none are the same).
func sameRules(a, b []policy.Rules) bool { return sameJSON(a, b) }

func sameNames(a, b map[string][]string) bool {
	return len(a) == len(b) && (len(a) == 0 || sameJSON(a, b))
}

func sameJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

type errorString string

func (e errorString) Error() string { return string(e) }
