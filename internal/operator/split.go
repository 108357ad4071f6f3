package operator

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	queuesv1 "github.com/tether-dev/tether/api/queues/v1alpha1"
	"github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/policy"
	"github.com/tether-dev/tether/internal/queue"
)

// splitWait bounds how long one targets/split request waits for the
// session's split to be ready; the client asks again until it is.
const splitWait = 20 * time.Second

// defaultSessionTTL is a QueueSplit's sessionTTLSeconds when unset.
const defaultSessionTTL = 60 * time.Second

func sessionTTL(qs *queuesv1.QueueSplit) time.Duration {
	if qs.Spec.SessionTTLSeconds > 0 {
		return time.Duration(qs.Spec.SessionTTLSeconds) * time.Second
	}
	return defaultSessionTTL
}

// Split serves targets/split for u: registers run's split of the queues
// of target name's QueueSplit, or refreshes it (the client's keep-alive),
// or ends it, and answers where it is. Any replica serves it; the
// leader's SplitReconciler does the work.
func (o *Operator) Split(ctx context.Context, u user.Info, ns, name string, req *v1alpha1.SplitRequest) (*v1alpha1.SplitRequest, error) {
	if o.Splits == nil {
		return nil, apierrors.NewServiceUnavailable("this tether-operator does not split queues (it was started without access to queuesplits.queues.tether.dev)")
	}
	spec, err := kube.ParseResourceName(name)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	run := req.Spec.Run
	if run == "" || strings.ContainsAny(run, "/ ") || len(run) > 40 {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("targets/split: spec.run %q must be the session's ID", run))
	}
	qs, err := o.splitFor(ctx, ns, spec)
	if err != nil {
		return nil, err
	}
	if req.Spec.End {
		err := o.editSessions(ctx, qs, func(qs *queuesv1.QueueSplit) bool {
			for i := range qs.Status.Sessions {
				if s := &qs.Status.Sessions[i]; s.Run == run && !s.Ending {
					s.Ending = true
					return true
				}
			}
			return false
		})
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		return &v1alpha1.SplitRequest{Spec: req.Spec, Status: v1alpha1.SplitRequestStatus{Message: "the split ends: its undelivered messages go back to the deployed workload"}}, nil
	}
	if err := checkFilters(qs, req.Spec.Queues); err != nil {
		o.event(ctx, ns, spec, corev1.EventTypeWarning, ReasonRefused, "%s: queue split refused: %v", u.GetName(), err)
		return nil, apierrors.NewBadRequest(err.Error())
	}
	if qs.DeletionTimestamp != nil {
		return nil, apierrors.NewConflict(queuesv1.GroupVersionResource.GroupResource(), qs.Name, errors.New("the QueueSplit is being deleted: its splits are ending"))
	}
	if s := sessionOf(qs, run); s != nil && s.Ending && s.Error != "" {
		// The operator ended it (the workload was changed back under it):
		// starting it again would fight whoever did that.
		return nil, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusGone,
			Reason: metav1.StatusReasonGone, Message: fmt.Sprintf("the split of session %s ended: %s", run, s.Error)}}
	}
	if r, err := o.splitRefusal(ctx, ns, spec); err != nil || r != nil {
		msg := fmt.Sprintf("%s: queue split of %s refused: %v", u.GetName(), spec, r)
		if err != nil {
			msg = fmt.Sprintf("the policies of %s in %s: %v", spec, ns, err)
		}
		if s := sessionOf(qs, run); s != nil && !s.Ending {
			// A policy made since it started: it ends, and its client is
			// told why at its next keep-alive (410 Gone).
			o.editSessions(ctx, qs, func(qs *queuesv1.QueueSplit) bool {
				if s := sessionOf(qs, run); s != nil && !s.Ending {
					s.Ending, s.Error = true, msg
					return true
				}
				return false
			})
			o.refused(ctx, u, ns, spec, v1alpha1.SubresourceSplit, msg)
			return nil, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusGone,
				Reason: metav1.StatusReasonGone, Message: fmt.Sprintf("the split of session %s ended: %s", run, msg)}}
		}
		o.refused(ctx, u, ns, spec, v1alpha1.SubresourceSplit, msg)
		forbidden := apierrors.NewForbidden(targetsResource, name, errors.New(msg))
		forbidden.ErrStatus.Details.Causes = append(forbidden.ErrStatus.Details.Causes, metav1.StatusCause{Type: v1alpha1.CausePolicy, Message: msg})
		return nil, forbidden
	}
	if s := sessionOf(qs, run); s == nil || s.Ending {
		if err := o.startSplit(ctx, u, qs, spec, req); err != nil {
			return nil, err
		}
	} else if time.Since(s.LastSeen.Time) > sessionTTL(qs)/4 {
		err := o.editSessions(ctx, qs, func(qs *queuesv1.QueueSplit) bool {
			if s := sessionOf(qs, run); s != nil && !s.Ending {
				s.LastSeen = metav1.Now()
				return true
			}
			return false
		})
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
	}
	// Wait for the leader to make it ready.
	deadline := time.Now().Add(splitWait)
	for {
		var cur queuesv1.QueueSplit
		if err := o.Splits.Get(ctx, client.ObjectKeyFromObject(qs), &cur); err != nil {
			return nil, apierrors.NewInternalError(fmt.Errorf("reading QueueSplit %s/%s: %w", qs.Namespace, qs.Name, err))
		}
		s := sessionOf(&cur, run)
		switch {
		case s == nil:
			return nil, apierrors.NewConflict(queuesv1.GroupVersionResource.GroupResource(), qs.Name, fmt.Errorf("the split of session %s ended meanwhile: start it again", run))
		case s.Error != "":
			return nil, apierrors.NewServiceUnavailable(fmt.Sprintf("splitting the queues of %s in %s: %s (nothing of the workload was changed for this session)", spec, ns, s.Error))
		case s.Ready || time.Now().After(deadline) || ctx.Err() != nil:
			return answer(req, &cur, s), nil
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// splitRefusal is the refusal of a policy that blocks splitting the
// queues of workload spec in ns, if one does.
func (o *Operator) splitRefusal(ctx context.Context, ns string, spec kube.TargetSpec) (*policy.Refusal, error) {
	if o.Policies == nil {
		return nil, nil
	}
	l, err := o.workloadLabels(ctx, ns, spec)
	if err != nil {
		return nil, fmt.Errorf("reading the labels of %s: %w", spec, err)
	}
	rules, err := o.selectPolicies(ctx, ns, []policyTarget{{Kind: string(spec.Kind), Name: spec.Name, Labels: l}})
	if err != nil {
		return nil, err
	}
	set, err := policy.Compile(rules)
	if err != nil {
		return nil, err
	}
	return set.QueueSplit(), nil
}

// answer is the targets/split reply for session s of qs.
func answer(req *v1alpha1.SplitRequest, qs *queuesv1.QueueSplit, s *queuesv1.SplitSession) *v1alpha1.SplitRequest {
	out := &v1alpha1.SplitRequest{Spec: req.Spec, Status: v1alpha1.SplitRequestStatus{Ready: s.Ready, Message: qs.Status.Message}}
	if s.Ready {
		out.Status.Env = map[string]string{}
		for _, q := range s.Queues {
			maps.Copy(out.Status.Env, q.Env)
			out.Status.Queues = append(out.Status.Queues, v1alpha1.SplitRequestQueue{ID: q.ID, Name: q.Name, Group: q.Group, Overlaps: q.Overlaps, OverlapsWon: q.OverlapsWon})
		}
	} else if out.Status.Message == "" {
		out.Status.Message = "waiting for tether-operator to start the split"
	}
	return out
}

func sessionOf(qs *queuesv1.QueueSplit, run string) *queuesv1.SplitSession {
	for i := range qs.Status.Sessions {
		if qs.Status.Sessions[i].Run == run {
			return &qs.Status.Sessions[i]
		}
	}
	return nil
}

// splitFor finds the QueueSplit of target spec in ns.
func (o *Operator) splitFor(ctx context.Context, ns string, spec kube.TargetSpec) (*queuesv1.QueueSplit, error) {
	var list queuesv1.QueueSplitList
	if err := o.Splits.List(ctx, &list, client.InNamespace(ns)); err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("listing the QueueSplits of %s: %w", ns, err))
	}
	var found []*queuesv1.QueueSplit
	for i := range list.Items {
		t, err := kube.ParseTarget(list.Items[i].Spec.Target)
		if err == nil && t.Kind == spec.Kind && t.Name == spec.Name {
			found = append(found, &list.Items[i])
		}
	}
	switch len(found) {
	case 0:
		return nil, apierrors.NewBadRequest(fmt.Sprintf("%s in %s has no QueueSplit: its queues cannot be split until the platform team writes one (kubectl get queuesplits -n %s; see docs/queue-splitting.md), or drop split_queues from your config", spec, ns, ns))
	case 1:
		return found[0], nil
	}
	var names []string
	for _, qs := range found {
		names = append(names, qs.Name)
	}
	return nil, apierrors.NewBadRequest(fmt.Sprintf("%s in %s has %d QueueSplits (%s): keep one", spec, ns, len(found), strings.Join(names, ", ")))
}

// checkFilters checks a session's split_queues against qs.
func checkFilters(qs *queuesv1.QueueSplit, queues map[string]map[string]string) error {
	if len(queues) == 0 {
		return errors.New("split_queues is empty: name at least one queue and its message_filter")
	}
	var ids []string
	for _, q := range qs.Spec.Queues {
		ids = append(ids, q.ID)
	}
	for _, id := range slices.Sorted(maps.Keys(queues)) {
		if !slices.Contains(ids, id) {
			return fmt.Errorf("split_queues: %q is not a queue of QueueSplit %s/%s (its queues: %s)", id, qs.Namespace, qs.Name, strings.Join(ids, ", "))
		}
		if _, err := queue.ParseFilter(queues[id]); err != nil {
			return fmt.Errorf("split_queues.%s: %w", id, err)
		}
	}
	return nil
}

// startSplit checks the brokers of the session's queues and adds the
// session to qs's status, for the leader to start.
func (o *Operator) startSplit(ctx context.Context, u user.Info, qs *queuesv1.QueueSplit, spec kube.TargetSpec, req *v1alpha1.SplitRequest) error {
	rs, err := o.resolveSplit(ctx, qs)
	if err != nil {
		return apierrors.NewBadRequest(fmt.Sprintf("queue splitting of %s in %s: %v (nothing was changed)", spec, qs.Namespace, err))
	}
	var ids []string
	for id := range req.Spec.Queues {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if err := o.checkBrokers(ctx, rs, ids); err != nil {
		o.event(ctx, qs.Namespace, spec, corev1.EventTypeWarning, ReasonSplitFailed, "%s: %v", u.GetName(), err)
		return apierrors.NewServiceUnavailable(fmt.Sprintf("%v (nothing was changed)", err))
	}
	now := metav1.Now()
	s := queuesv1.SplitSession{Run: req.Spec.Run, User: u.GetName(), Client: req.Spec.Client, Started: now, LastSeen: now}
	var filters []string
	for _, id := range ids {
		q, _ := rs.queue(id)
		dest := q.forSession(req.Spec.Run)
		s.Queues = append(s.Queues, queuesv1.SessionQueue{ID: id, Filter: req.Spec.Queues[id], Name: dest.Name, Group: dest.Group})
		f, _ := queue.ParseFilter(req.Spec.Queues[id])
		filters = append(filters, id+" ("+f.String()+")")
	}
	err = o.editSessions(ctx, qs, func(qs *queuesv1.QueueSplit) bool {
		if cur := sessionOf(qs, s.Run); cur != nil {
			if !cur.Ending {
				return false
			}
			// An ended one that is still draining: it gets a new start.
			qs.Status.Sessions = slices.DeleteFunc(qs.Status.Sessions, func(x queuesv1.SplitSession) bool { return x.Run == s.Run })
		}
		qs.Status.Sessions = append(qs.Status.Sessions, s)
		return true
	})
	if err != nil {
		return apierrors.NewInternalError(err)
	}
	o.log().Info("queue split requested", "user", u.GetName(), "namespace", qs.Namespace, "target", spec.String(), "session", s.Run, "queues", filters)
	o.event(ctx, qs.Namespace, spec, corev1.EventTypeNormal, ReasonSplitStarted, "%s splits %s for session %s", u.GetName(), strings.Join(filters, ", "), s.Run)
	return nil
}

// checkBrokers checks that the brokers of queues ids answer and have
// their queues.
func (o *Operator) checkBrokers(ctx context.Context, rs *resolvedSplit, ids []string) error {
	for _, id := range ids {
		q, _ := rs.queue(id)
		b, err := o.open(q.spec.Kind, q.settings)
		if err != nil {
			return fmt.Errorf("queue %q: %w", id, err)
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = b.Check(cctx, q.source)
		cancel()
		b.Close()
		if err != nil {
			return fmt.Errorf("queue %q: %w", id, err)
		}
	}
	return nil
}

// editSessions applies edit to qs's latest status and writes it if edit
// says it changed.
func (o *Operator) editSessions(ctx context.Context, qs *queuesv1.QueueSplit, edit func(*queuesv1.QueueSplit) bool) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		var cur queuesv1.QueueSplit
		if err := o.Splits.Get(ctx, client.ObjectKeyFromObject(qs), &cur); err != nil {
			return err
		}
		if !edit(&cur) {
			return nil
		}
		return o.Splits.Status().Update(ctx, &cur)
	})
}
