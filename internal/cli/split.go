package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/progress"
	"github.com/tether-dev/tether/internal/version"
)

// splitTimeout bounds how long tether waits for a split to be ready (the
// workload's rollout to its fallback queues included).
const splitTimeout = 5 * time.Minute

// splitKeepAlive is how often a running session tells tether-operator
// that its split is still wanted (its QueueSplit's TTL ends it when that
// stops).
const splitKeepAlive = 5 * time.Second

// queueSplit is a session's split of its target's queues, held by
// tether-operator (targets/split).
type queueSplit struct {
	k    *kubeClients
	spec kube.TargetSpec
	req  v1alpha1.SplitRequest

	mu       sync.Mutex
	last     v1alpha1.SplitRequestStatus
	warnTo   func(format string, args ...any) // under mu: the progress, then the session
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// startSplit asks tether-operator for run's split of the queues in cfg's
// split_queues, waits until it is ready, and puts what the program must
// read instead (its own queue names) in cfg.Env.Override.
func startSplit(ctx context.Context, k *kubeClients, spec kube.TargetSpec, cfg *config.Config, run string, pw *progress.Writer) (*queueSplit, error) {
	ids := slices.Sorted(maps.Keys(cfg.SplitQueues))
	s := &queueSplit{k: k, spec: spec, stop: make(chan struct{})}
	s.req.Spec = v1alpha1.SplitRequestSpec{Run: run, Client: "tether/" + version.Version, Queues: map[string]map[string]string{}}
	for _, id := range ids {
		s.req.Spec.Queues[id] = cfg.SplitQueues[id].MessageFilter
	}
	step := pw.Start("splitting queue " + strings.Join(ids, ", ") + " of " + spec.String())
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, splitTimeout)
	defer cancel()
	for {
		st, err := s.post(ctx, s.req)
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("the split of %s was not ready within %v (last: %s): %w", spec, splitTimeout, s.last.Message, err)
			}
			step.Fail(err)
			s.end(context.WithoutCancel(ctx))
			return nil, err
		}
		s.mu.Lock()
		s.last = *st
		s.mu.Unlock()
		if st.Ready {
			if cfg.Env.Override == nil {
				cfg.Env.Override = map[string]string{}
			}
			maps.Copy(cfg.Env.Override, st.Env)
			var names []string
			for _, q := range st.Queues {
				names = append(names, q.ID+" → "+q.Name)
			}
			step.Done(strings.Join(names, ", "))
			// Kept alive from now: starting the agent and the session
			// may take longer than the QueueSplit's TTL.
			s.warnTo = func(format string, args ...any) { pw.Info("warning: "+format, args...) }
			s.keepAlive(parent)
			return s, nil
		}
		if st.Message != "" {
			step.Detail("%s", st.Message)
		}
	}
}

// post sends one targets/split request.
func (s *queueSplit) post(ctx context.Context, req v1alpha1.SplitRequest) (*v1alpha1.SplitRequestStatus, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	path := "/apis/" + v1alpha1.SchemeGroupVersion.String() + "/namespaces/" + s.k.namespace + "/" + v1alpha1.ResourceTargets
	raw, err := s.k.client.Discovery().RESTClient().Post().AbsPath(path, s.spec.ResourceName(), v1alpha1.SubresourceSplit).
		SetHeader("Content-Type", "application/json").Body(body).DoRaw(ctx)
	if err != nil {
		// The operator's Status says what is wrong; the client's error
		// may only have its code.
		var st metav1.Status
		if json.Unmarshal(raw, &st) == nil && st.Message != "" {
			if se, ok := err.(apierrors.APIStatus); ok {
				full := se.Status()
				full.Message = st.Message
				err = &apierrors.StatusError{ErrStatus: full}
			} else {
				err = fmt.Errorf("%s: %w", st.Message, err)
			}
		}
		return nil, splitError(err, s.spec, s.k.namespace)
	}
	var out v1alpha1.SplitRequest
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("decoding tether-operator's answer to targets/split: %w", err)
	}
	return &out.Status, nil
}

// splitError says what to do about a refused split.
func splitError(err error, spec kube.TargetSpec, ns string) error {
	var st apierrors.APIStatus
	msg := err.Error()
	if errors.As(err, &st) && st.Status().Message != "" {
		msg = st.Status().Message
	}
	byPolicy := false
	if st != nil && st.Status().Details != nil {
		for _, c := range st.Status().Details.Causes {
			byPolicy = byPolicy || c.Type == v1alpha1.CausePolicy
		}
	}
	switch {
	case byPolicy:
		return fmt.Errorf("queue splitting: %s: the platform team's policy forbids it here (tether policy check -t %s shows the policies); run without split_queues", msg, spec)
	case apierrors.IsForbidden(err):
		return fmt.Errorf("queue splitting: %s: splitting needs the RBAC verb create on targets/split in tether.dev in namespace %s (the ClusterRole tether-user has it: ask your platform team)", msg, ns)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("queue splitting: %s: this tether-operator does not split queues (upgrade it: tether operator install)", msg)
	case apierrors.IsGone(err):
		return fmt.Errorf("queue splitting of %s: %w", spec, err) // keepAlive stops on it
	}
	return fmt.Errorf("queue splitting of %s: %s", spec, msg)
}

// warnVia makes the session tell the split's warnings from now on.
func (s *queueSplit) warnVia(warn func(format string, args ...any)) {
	s.mu.Lock()
	s.warnTo = warn
	s.mu.Unlock()
}

// keepAlive tells tether-operator every few seconds that the split is
// still wanted, and warns when it changes: it ended (a TTL passed while
// the cluster could not be reached; tether starts it again), or messages
// matched an earlier session's filter too.
func (s *queueSplit) keepAlive(ctx context.Context) {
	warn := func(format string, args ...any) {
		s.mu.Lock()
		to := s.warnTo
		s.mu.Unlock()
		to(format, args...)
	}
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		t := time.NewTimer(splitKeepAlive)
		defer t.Stop()
		failing := false
		for {
			select {
			case <-s.stop:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			pctx, cancel := context.WithTimeout(ctx, 2*splitKeepAlive) // one stuck request must not outlast the TTL
			st, err := s.post(pctx, s.req)
			cancel()
			if err != nil {
				// Again soon: the TTL counts from the last answer.
				t.Reset(splitKeepAlive / 5)
			} else {
				t.Reset(splitKeepAlive)
			}
			if apierrors.IsGone(err) {
				// Ended by the operator for good: the session goes on
				// without it.
				warn("%v; this session no longer splits (start tether again to split)", err)
				return
			}
			if err != nil {
				if !failing && ctx.Err() == nil {
					warn("queue splitting: %v (retrying; the split ends if tether-operator does not hear from this session for its QueueSplit's TTL)", err)
				}
				failing = true
				continue
			}
			if failing {
				warn("queue splitting: tether-operator answers again")
				failing = false
			}
			s.mu.Lock()
			prev := s.last
			s.last = *st
			s.mu.Unlock()
			if prev.Ready && !st.Ready {
				warn("queue splitting: the split had ended (no word from this session for its TTL); it is being started again: messages in between went to the deployed workload")
			}
			for _, q := range st.Queues {
				var was v1alpha1.SplitRequestQueue
				for _, p := range prev.Queues {
					if p.ID == q.ID {
						was = p
					}
				}
				if q.Overlaps > was.Overlaps {
					warn("queue %s: %d more messages matched your message_filter but went to an earlier session whose filter matches them too (tether queues status -n %s shows who)", q.ID, q.Overlaps-was.Overlaps, s.k.namespace)
				}
				if q.OverlapsWon > was.OverlapsWon {
					warn("queue %s: %d more messages you got matched a later session's message_filter too (you started first, so they are yours)", q.ID, q.OverlapsWon-was.OverlapsWon)
				}
			}
		}
	}()
}

// end tells tether-operator the split ended: its undelivered messages go
// back to the deployed workload.
func (s *queueSplit) end(ctx context.Context) {
	if s == nil {
		return
	}
	s.stopOnce.Do(func() { close(s.stop) })
	if s.done != nil {
		select {
		case <-s.done:
		case <-time.After(splitKeepAlive):
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req := s.req
	req.Spec.End = true
	req.Spec.Queues = nil
	s.post(ctx, req)
}
