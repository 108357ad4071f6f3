package operator

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"

	"github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/protocol"
)

var sessionsResource = schema.GroupResource{Group: v1alpha1.GroupName, Resource: v1alpha1.ResourceSessions}

// Sessions lists the sessions in namespace ns ("": all), oldest first:
// one per run, with an entry per pod it runs in.
func (o *Operator) Sessions(ctx context.Context, ns string) ([]v1alpha1.Session, error) {
	all, err := o.allSessions(ctx)
	if err != nil {
		return nil, err
	}
	return group(all, ns, o.log().Warn), nil
}

// group merges the agents' sessions into one Session per run.
func group(all []agentSessions, ns string, warn func(string, ...any)) []v1alpha1.Session {
	byRun := map[string]*v1alpha1.Session{}
	for _, a := range all {
		if a.err != nil {
			warn("an agent did not list its sessions", "agent", a.pod.Name, "err", a.err)
			continue
		}
		for _, si := range a.sessions {
			g := si.Grant
			if g == nil || (ns != "" && g.Namespace != ns) {
				continue // not the operator's (or not asked for)
			}
			run := cmp.Or(si.Run, si.ID)
			key := g.Namespace + "/" + run
			s := byRun[key]
			if s == nil {
				s = &v1alpha1.Session{
					TypeMeta:   metav1.TypeMeta{APIVersion: v1alpha1.SchemeGroupVersion.String(), Kind: "Session"},
					ObjectMeta: metav1.ObjectMeta{Name: run, Namespace: g.Namespace, CreationTimestamp: metav1.NewTime(si.Started)},
					Spec:       v1alpha1.SessionSpec{User: g.User, Groups: g.Groups, Target: g.Target, Client: si.Client},
					Status:     v1alpha1.SessionStatus{Started: metav1.NewTime(si.Started)},
				}
				byRun[key] = s
			}
			if si.Started.Before(s.Status.Started.Time) {
				s.Status.Started = metav1.NewTime(si.Started)
				s.CreationTimestamp = s.Status.Started
			}
			s.Status.Pods = append(s.Status.Pods, v1alpha1.SessionPod{Name: g.Pod, Agent: a.pod.Name, ID: si.ID, Connected: si.Connected})
			for _, sub := range si.Subscriptions {
				p := v1alpha1.SessionPort{Port: int32(sub.Port), Mode: sub.Mode, Filter: sub.Filter}
				if !slices.Contains(s.Status.Ports, p) {
					s.Status.Ports = append(s.Status.Ports, p)
				}
			}
			for _, r := range si.Refused {
				s.Status.Refused = append(s.Status.Refused, v1alpha1.SessionRefusal{Time: metav1.NewTime(r.Time), Action: r.Action, Detail: r.Detail})
			}
		}
	}
	out := make([]v1alpha1.Session, 0, len(byRun))
	for _, s := range byRun {
		slices.SortFunc(s.Status.Pods, func(a, b v1alpha1.SessionPod) int { return cmp.Compare(a.Name, b.Name) })
		slices.SortFunc(s.Status.Ports, func(a, b v1alpha1.SessionPort) int { return cmp.Compare(a.Port, b.Port) })
		slices.SortFunc(s.Status.Refused, func(a, b v1alpha1.SessionRefusal) int { return a.Time.Compare(b.Time.Time) })
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b v1alpha1.Session) int {
		return cmp.Or(a.Status.Started.Compare(b.Status.Started.Time), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	return out
}

// Session returns session name of namespace ns.
func (o *Operator) Session(ctx context.Context, ns, name string) (*v1alpha1.Session, error) {
	list, err := o.Sessions(ctx, ns)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	for i := range list {
		if list[i].Name == name {
			return &list[i], nil
		}
	}
	return nil, apierrors.NewNotFound(sessionsResource, name)
}

// Kill ends session name of namespace ns for good, on every agent that
// serves it; its user's tether is told that by ended it. It returns the
// session as it was.
func (o *Operator) Kill(ctx context.Context, by user.Info, ns, name string) (*v1alpha1.Session, error) {
	s, err := o.Session(ctx, ns, name)
	if err != nil {
		return nil, err
	}
	reason := fmt.Sprintf("session %s was ended by %s (tether sessions kill)", name, by.GetName())
	agents := map[string]bool{}
	for _, p := range s.Status.Pods {
		agents[p.Agent] = true
	}
	pods, err := o.agentPods(ctx)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	killed := 0
	var failed []string
	for i := range pods {
		if !agents[pods[i].Name] {
			continue
		}
		resp, err := o.admin(ctx, &pods[i], protocol.AdminRequest{Op: protocol.AdminKill, Run: name, Reason: reason})
		if err != nil {
			failed = append(failed, err.Error())
			continue
		}
		killed += resp.Killed
	}
	spec, _ := kube.ParseTarget(s.Spec.Target)
	o.log().Info("session killed", "by", by.GetName(), "namespace", ns, "session", name, "user", s.Spec.User, "target", s.Spec.Target, "agent_sessions", killed)
	o.event(ctx, ns, spec, corev1.EventTypeNormal, ReasonKilled, "session %s of %s was ended by %s", name, s.Spec.User, by.GetName())
	if len(failed) > 0 {
		return nil, apierrors.NewInternalError(fmt.Errorf("ending session %s: %v (ended %d of its agent sessions; try again)", name, failed, killed))
	}
	return s, nil
}
