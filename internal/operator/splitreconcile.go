package operator

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	queuesv1 "github.com/tether-dev/tether/api/queues/v1alpha1"
	"github.com/tether-dev/tether/internal/queue"
)

// FinalizerRestore keeps a QueueSplit that has patched its workload until
// the workload is restored and the temporary queues drained.
const FinalizerRestore = "queues.tether.dev/restore"

// SplitReconciler runs the splits: for the first session of a QueueSplit
// it points the workload at fallback queues and starts a forwarder per
// queue; it gives each session its queues, ends the sessions whose client
// ended or went silent for the TTL (draining their queues back), and when
// none is left restores the workload and drains the fallback queues back.
// Only the leader runs it: it owns the forwarders.
type SplitReconciler struct {
	O *Operator
	// Every is how often a split with sessions is looked at (default 1 s).
	Every time.Duration

	mu   sync.Mutex
	runs map[types.NamespacedName]*splitRun
}

// splitRun is what runs for one QueueSplit: a broker connection and a
// forwarder per queue.
type splitRun struct {
	brokers map[string]queue.Broker // by queue ID
	fwds    map[string]*forwarding
}

type forwarding struct {
	f      *queue.Forwarder
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *SplitReconciler) run(key types.NamespacedName) *splitRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.runs == nil {
		r.runs = map[types.NamespacedName]*splitRun{}
	}
	sr := r.runs[key]
	if sr == nil {
		sr = &splitRun{brokers: map[string]queue.Broker{}, fwds: map[string]*forwarding{}}
		r.runs[key] = sr
	}
	return sr
}

// broker returns q's broker connection, opening it once.
func (r *SplitReconciler) broker(sr *splitRun, q splitQueue) (queue.Broker, error) {
	if b := sr.brokers[q.spec.ID]; b != nil {
		return b, nil
	}
	b, err := r.O.open(q.spec.Kind, q.settings)
	if err != nil {
		return nil, err
	}
	sr.brokers[q.spec.ID] = b
	return b, nil
}

// stop stops key's forwarders (each after its batch in flight) and,
// with closeBrokers, its broker connections.
func (r *SplitReconciler) stop(key types.NamespacedName, closeBrokers bool) {
	sr := r.run(key)
	for id, fw := range sr.fwds {
		fw.cancel()
		<-fw.done
		delete(sr.fwds, id)
	}
	if closeBrokers {
		for _, b := range sr.brokers {
			b.Close()
		}
		r.mu.Lock()
		delete(r.runs, key)
		r.mu.Unlock()
	}
}

// StopAll stops every forwarder, each after its batch in flight, and
// closes the broker connections.
func (r *SplitReconciler) StopAll() {
	r.mu.Lock()
	keys := make([]types.NamespacedName, 0, len(r.runs))
	for k := range r.runs {
		keys = append(keys, k)
	}
	r.mu.Unlock()
	for _, k := range keys {
		r.stop(k, true)
	}
}

// Reconcile takes one QueueSplit one step further.
func (r *SplitReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var qs queuesv1.QueueSplit
	if err := r.O.Splits.Get(ctx, req.NamespacedName, &qs); err != nil {
		if client.IgnoreNotFound(err) == nil {
			r.stop(req.NamespacedName, true)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	before := qs.Status.DeepCopy()
	stepErr := r.step(ctx, &qs)
	if stepErr != nil {
		r.O.log().Warn("queue split", "namespace", qs.Namespace, "queuesplit", qs.Name, "err", stepErr)
		if qs.Status.Message == before.Message {
			qs.Status.Message = stepErr.Error()
		}
	}
	qs.Status.ActiveSessions = int32(len(active(&qs)))
	if !equality.Semantic.DeepEqual(before, &qs.Status) {
		if err := r.O.Splits.Status().Update(ctx, &qs); err != nil {
			return ctrl.Result{}, fmt.Errorf("writing the status of QueueSplit %s/%s: %w", qs.Namespace, qs.Name, err)
		}
	}
	idle := qs.Status.Patch == nil && len(qs.Status.Sessions) == 0
	if idle {
		r.stop(req.NamespacedName, true)
		if controllerutil.RemoveFinalizer(&qs, FinalizerRestore) {
			if err := r.O.Splits.Update(ctx, &qs); err != nil {
				return ctrl.Result{}, err
			}
		}
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: cmp.Or(r.Every, time.Second)}, nil
}

// active are qs's sessions that split now or are to.
func active(qs *queuesv1.QueueSplit) []*queuesv1.SplitSession {
	var out []*queuesv1.SplitSession
	for i := range qs.Status.Sessions {
		if s := &qs.Status.Sessions[i]; !s.Ending && s.Error == "" {
			out = append(out, s)
		}
	}
	return out
}

// step does what qs's state calls for next, in its status.
func (r *SplitReconciler) step(ctx context.Context, qs *queuesv1.QueueSplit) error {
	key := client.ObjectKeyFromObject(qs)
	st := &qs.Status
	st.Phase = cmp.Or(st.Phase, queuesv1.PhaseIdle)
	if r.expire(ctx, qs) {
		// Ending is written first: if a keep-alive came meanwhile, the
		// write conflicts and the session goes on, its routes and queue
		// untouched.
		return nil
	}
	// Sessions that could not start are told (targets/split), then
	// forgotten.
	st.Sessions = slices.DeleteFunc(st.Sessions, func(s queuesv1.SplitSession) bool {
		return s.Error != "" && time.Since(s.LastSeen.Time) > time.Minute
	})
	rs, err := r.O.resolveSplit(ctx, qs)
	if err != nil && qs.DeletionTimestamp != nil && r.workloadGone(ctx, qs) {
		// Deleted with its workload (its namespace is): nothing is left
		// to restore, and its finalizer must not hold the namespace.
		var temp []string
		for _, q := range st.Queues {
			temp = append(temp, q.Fallback)
		}
		for _, s := range st.Sessions {
			for _, q := range s.Queues {
				temp = append(temp, q.Name)
			}
		}
		r.O.log().Warn("queue split deleted after its workload: nothing to restore; its temporary queues are left on the broker if it outlives the workload",
			"namespace", qs.Namespace, "queuesplit", qs.Name, "queues", temp)
		st.Patch, st.Queues, st.Sessions = nil, nil, nil
		st.Phase, st.Message = queuesv1.PhaseIdle, ""
		return nil
	}
	if err != nil {
		r.fail(qs, err)
		if st.Patch == nil {
			return err
		}
		// It cannot be resolved but is patched: a person must look.
		st.Phase = queuesv1.PhaseFailed
		return err
	}
	sr := r.run(key)
	switch st.Phase {
	case queuesv1.PhaseIdle, queuesv1.PhaseFailed:
		if len(active(qs)) == 0 {
			return nil
		}
		return r.patch(ctx, qs, rs, sr)
	case queuesv1.PhasePatching:
		if len(active(qs)) == 0 {
			st.Phase = queuesv1.PhaseRestoring
			return nil
		}
		return r.waitPatched(ctx, qs, rs, sr)
	case queuesv1.PhaseActive:
		return r.runActive(ctx, qs, rs, sr)
	case queuesv1.PhaseRestoring:
		return r.restore(ctx, qs, rs, sr)
	}
	return fmt.Errorf("unknown phase %q", st.Phase)
}

// workloadGone says whether qs's target workload no longer exists.
func (r *SplitReconciler) workloadGone(ctx context.Context, qs *queuesv1.QueueSplit) bool {
	target, err := splitTarget(qs)
	if err != nil {
		return false
	}
	_, err = r.O.getWorkload(ctx, qs.Namespace, target)
	return isNotFound(err)
}

// expire ends the sessions whose client was not heard from for the TTL,
// and all of them when the QueueSplit is being deleted. It reports
// whether it ended any.
func (r *SplitReconciler) expire(ctx context.Context, qs *queuesv1.QueueSplit) bool {
	ttl := sessionTTL(qs)
	ended := false
	for i := range qs.Status.Sessions {
		s := &qs.Status.Sessions[i]
		if s.Ending || s.Error != "" {
			continue
		}
		switch {
		case qs.DeletionTimestamp != nil:
			s.Ending, ended = true, true
		case time.Since(s.LastSeen.Time) > ttl:
			s.Ending, ended = true, true
			target, _ := splitTarget(qs)
			r.O.log().Info("queue split session expired", "namespace", qs.Namespace, "queuesplit", qs.Name, "session", s.Run, "user", s.User, "ttl", ttl.String(), "lastSeen", s.LastSeen.Format(time.RFC3339))
			r.O.event(ctx, qs.Namespace, target, corev1.EventTypeNormal, ReasonSplitEnded, "the split of session %s of %s ends: its client was not heard from for %v (the QueueSplit's TTL)", s.Run, s.User, ttl)
		}
	}
	return ended
}

// fail marks the sessions not started yet with err.
func (r *SplitReconciler) fail(qs *queuesv1.QueueSplit, err error) {
	for i := range qs.Status.Sessions {
		if s := &qs.Status.Sessions[i]; !s.Ready && !s.Ending && s.Error == "" {
			s.Error = err.Error()
		}
	}
}

// patch creates the fallback queues, records the patch, and points the
// workload at them.
func (r *SplitReconciler) patch(ctx context.Context, qs *queuesv1.QueueSplit, rs *resolvedSplit, sr *splitRun) error {
	st := &qs.Status
	var qstatus []queuesv1.SplitQueueStatus
	for _, q := range rs.queues {
		b, err := r.broker(sr, q)
		if err == nil {
			err = b.Check(ctx, q.source)
		}
		if err == nil {
			err = b.Create(ctx, q.fallback(), q.source)
		}
		if err != nil {
			err = fmt.Errorf("queue %q: %w", q.spec.ID, err)
			r.fail(qs, err)
			r.O.event(ctx, qs.Namespace, rs.target, corev1.EventTypeWarning, ReasonSplitFailed, "%v: nothing was changed", err)
			return err
		}
		fb := q.fallback()
		qstatus = append(qstatus, queuesv1.SplitQueueStatus{ID: q.spec.ID, Source: q.source.Name, Group: q.source.Group, Fallback: fb.Name, FallbackGroup: fb.Group})
	}
	p, err := rs.patchFor()
	if err != nil {
		r.fail(qs, err)
		return err
	}
	if controllerutil.AddFinalizer(qs, FinalizerRestore) {
		if err := r.O.Splits.Update(ctx, qs); err != nil {
			return fmt.Errorf("adding the finalizer: %w", err)
		}
	}
	// The status says what to restore before the workload changes.
	st.Patch, st.Queues, st.Phase = p, qstatus, queuesv1.PhasePatching
	st.Message = fmt.Sprintf("pointing %s at the fallback queues (a rollout)", rs.target)
	if err := r.O.Splits.Status().Update(ctx, qs); err != nil {
		return fmt.Errorf("recording the patch: %w", err)
	}
	err = r.O.editWorkload(ctx, qs.Namespace, rs.target, func(w workload) error {
		c, err := w.container(qs.Spec.Container)
		if err != nil {
			return err
		}
		setEnv(c, p.Patched)
		m := w.meta()
		if m.Annotations == nil {
			m.Annotations = map[string]string{}
		}
		m.Annotations[AnnotationSplit] = qs.Name
		return nil
	})
	if err != nil {
		st.Phase = queuesv1.PhaseRestoring // undo what may be done
		err = fmt.Errorf("patching %s: %w", rs.target, err)
		r.fail(qs, err)
		return err
	}
	var vars []string
	for _, v := range p.Patched {
		vars = append(vars, v.Name+"="+v.Value)
	}
	msg := fmt.Sprintf("pointed %s at its fallback queues (%s) for queue splitting; it rolls out", rs.target, strings.Join(vars, ", "))
	if g := gitOps(rs.w); g != "" {
		msg += "; " + g + " manages it: if it undoes this change, the split ends (exclude the env of " + rs.target.String() + " from its sync while you split)"
	}
	r.O.log().Info("workload patched", "namespace", qs.Namespace, "target", rs.target.String(), "env", vars)
	r.O.event(ctx, qs.Namespace, rs.target, corev1.EventTypeNormal, ReasonPatched, "%s", msg)
	return nil
}

// waitPatched waits for the patched workload's rollout and for its old
// pods to stop consuming the queues, then starts the forwarders.
func (r *SplitReconciler) waitPatched(ctx context.Context, qs *queuesv1.QueueSplit, rs *resolvedSplit, sr *splitRun) error {
	st := &qs.Status
	if done, why := rolledOut(rs.w); !done {
		st.Message = fmt.Sprintf("rolling out %s with the fallback queues: %s", rs.target, why)
		return nil
	}
	for _, q := range rs.queues {
		b, err := r.broker(sr, q)
		if err != nil {
			return err
		}
		idle, err := b.Idle(ctx, q.source)
		if err != nil {
			return fmt.Errorf("queue %q: %w", q.spec.ID, err)
		}
		if !idle {
			st.Message = fmt.Sprintf("waiting for the old pods of %s to stop consuming %s", rs.target, q.source)
			return nil
		}
	}
	st.Phase, st.Message = queuesv1.PhaseActive, ""
	return r.runActive(ctx, qs, rs, sr)
}

// runActive keeps the forwarders running with the sessions' routes,
// starts new sessions and ends the ones that end.
func (r *SplitReconciler) runActive(ctx context.Context, qs *queuesv1.QueueSplit, rs *resolvedSplit, sr *splitRun) error {
	st := &qs.Status
	if c, err := rs.w.container(qs.Spec.Container); err == nil && st.Patch != nil && !isPatched(c, st.Patch.Patched) {
		// Someone (a GitOps controller?) changed it back: end the split,
		// without fighting.
		who := cmp.Or(gitOps(rs.w), "someone")
		msg := fmt.Sprintf("%s changed %s's environment back while its queues were split: the split ends (exclude its env from the sync while you split, then start again)", who, rs.target)
		r.O.event(ctx, qs.Namespace, rs.target, corev1.EventTypeWarning, ReasonSplitFailed, "%s", msg)
		for i := range st.Sessions {
			if s := &st.Sessions[i]; !s.Ending {
				s.Ending, s.Error = true, msg
			}
		}
		st.Phase, st.Message = queuesv1.PhaseRestoring, msg
		return nil
	}
	// Start the sessions that are new.
	for i := range st.Sessions {
		s := &st.Sessions[i]
		if s.Ready || s.Ending || s.Error != "" {
			continue
		}
		if err := r.startSession(ctx, rs, sr, s); err != nil {
			s.Error = err.Error()
			r.O.event(ctx, qs.Namespace, rs.target, corev1.EventTypeWarning, ReasonSplitFailed, "session %s of %s: %v", s.Run, s.User, err)
		}
	}
	for _, q := range rs.queues {
		if err := r.forward(qs, rs, sr, q); err != nil {
			return err
		}
	}
	// End the sessions that end (the routes no longer have them).
	var errs []string
	for i := 0; i < len(st.Sessions); i++ {
		s := &st.Sessions[i]
		if !s.Ending {
			continue
		}
		if err := r.endSession(ctx, qs, rs, sr, s, false); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if s.Error == "" { // one that failed stays a while, for its client to be told
			st.Sessions = slices.Delete(st.Sessions, i, i+1)
			i--
		}
	}
	r.stats(ctx, qs, rs, sr)
	if len(active(qs)) == 0 {
		st.Phase, st.Message = queuesv1.PhaseRestoring, fmt.Sprintf("the last session ended: restoring %s", rs.target)
	}
	if len(errs) > 0 {
		return fmt.Errorf("ending sessions: %s", strings.Join(errs, "; "))
	}
	return nil
}

// startSession creates s's queues and its environment.
func (r *SplitReconciler) startSession(ctx context.Context, rs *resolvedSplit, sr *splitRun, s *queuesv1.SplitSession) error {
	for j := range s.Queues {
		sq := &s.Queues[j]
		q, ok := rs.queue(sq.ID)
		if !ok {
			return fmt.Errorf("queue %q is no longer in the QueueSplit", sq.ID)
		}
		b, err := r.broker(sr, q)
		if err != nil {
			return err
		}
		dest := q.forSession(s.Run)
		if err := b.Create(ctx, dest, q.source); err != nil {
			return fmt.Errorf("queue %q: %w", sq.ID, err)
		}
		vars, err := q.env(dest)
		if err != nil {
			return fmt.Errorf("queue %q: %w", sq.ID, err)
		}
		sq.Name, sq.Group, sq.Env = dest.Name, dest.Group, map[string]string{}
		for _, v := range vars {
			sq.Env[v.Name] = v.Value
		}
	}
	s.Ready = true
	r.O.log().Info("queue split session ready", "namespace", rs.qs.Namespace, "queuesplit", rs.qs.Name, "session", s.Run, "user", s.User)
	return nil
}

// routes are queue id's routes: the ready sessions that do not end,
// earliest first.
func routes(qs *queuesv1.QueueSplit, id string) []queue.Route {
	ss := slices.Clone(qs.Status.Sessions)
	slices.SortStableFunc(ss, func(a, b queuesv1.SplitSession) int {
		return cmp.Or(a.Started.Compare(b.Started.Time), cmp.Compare(a.Run, b.Run))
	})
	var out []queue.Route
	for _, s := range ss {
		if !s.Ready || s.Ending {
			continue
		}
		for _, sq := range s.Queues {
			if sq.ID != id {
				continue
			}
			f, err := queue.ParseFilter(sq.Filter)
			if err != nil {
				continue // checked when it started
			}
			out = append(out, queue.Route{Session: s.Run, Filter: f, Dest: queue.Queue{Name: sq.Name, Group: sq.Group}})
		}
	}
	return out
}

// forward keeps q's forwarder running with the current routes.
func (r *SplitReconciler) forward(qs *queuesv1.QueueSplit, rs *resolvedSplit, sr *splitRun, q splitQueue) error {
	fw := sr.fwds[q.spec.ID]
	if fw == nil {
		b, err := r.broker(sr, q)
		if err != nil {
			return err
		}
		log := r.O.log().With("namespace", qs.Namespace, "queuesplit", qs.Name, "queue", q.spec.ID)
		f := &queue.Forwarder{Broker: b, Source: q.source, Fallback: q.fallback(), Log: log}
		f.SetRoutes(routes(qs, q.spec.ID))
		ctx, cancel := context.WithCancel(context.Background())
		fw = &forwarding{f: f, cancel: cancel, done: make(chan struct{})}
		sr.fwds[q.spec.ID] = fw
		go func() {
			defer close(fw.done)
			for ctx.Err() == nil {
				err := f.Run(ctx)
				if err == nil {
					return
				}
				log.Warn("forwarder failed: it resumes from the last acknowledged message", "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(time.Second):
				}
			}
		}()
		log.Info("forwarding", "source", q.source.String(), "fallback", q.fallback().String())
		return nil
	}
	fw.f.SetRoutes(routes(qs, q.spec.ID))
	return nil
}

// endSession drains s's queues into the deployed workload's queue (the
// fallback, or with toSource the original, once the forwarders stopped)
// and deletes them. Its routes must be gone already.
func (r *SplitReconciler) endSession(ctx context.Context, qs *queuesv1.QueueSplit, rs *resolvedSplit, sr *splitRun, s *queuesv1.SplitSession, toSource bool) error {
	if !s.Ready {
		return nil
	}
	total := 0
	for _, sq := range s.Queues {
		q, ok := rs.queue(sq.ID)
		if !ok {
			continue
		}
		b, err := r.broker(sr, q)
		if err != nil {
			return err
		}
		from := queue.Queue{Name: sq.Name, Group: sq.Group}
		idle, err := b.Idle(ctx, from)
		if err != nil {
			return err
		}
		if !idle {
			return fmt.Errorf("session %s: %s is still consumed (its program is still running?): it is drained once it stops", s.Run, from)
		}
		to := q.fallback()
		if toSource {
			to = q.source
		}
		n, err := queue.Drain(ctx, b, from, to)
		total += n
		if err != nil {
			return fmt.Errorf("session %s: %w", s.Run, err)
		}
		if err := b.Delete(ctx, from); err != nil {
			return fmt.Errorf("session %s: %w", s.Run, err)
		}
	}
	s.Ready = false // drained: a retry of the status write finds nothing to drain
	r.O.log().Info("queue split session ended", "namespace", qs.Namespace, "queuesplit", qs.Name, "session", s.Run, "user", s.User, "drained", total)
	r.O.event(ctx, qs.Namespace, rs.target, corev1.EventTypeNormal, ReasonSplitEnded, "the split of session %s of %s ended: %d undelivered messages went back to the deployed workload", s.Run, s.User, total)
	return nil
}

// stats copies the forwarders' counts into the status.
func (r *SplitReconciler) stats(ctx context.Context, qs *queuesv1.QueueSplit, rs *resolvedSplit, sr *splitRun) {
	for i := range qs.Status.Queues {
		qst := &qs.Status.Queues[i]
		fw := sr.fwds[qst.ID]
		if fw == nil {
			continue
		}
		stats := fw.f.Stats()
		qst.ToFallback = stats.Fallback
		if q, ok := rs.queue(qst.ID); ok {
			if b, err := r.broker(sr, q); err == nil {
				if lag, err := b.Lag(ctx, q.source); err == nil {
					qst.Lag = lag
				}
			}
		}
		for j := range qs.Status.Sessions {
			s := &qs.Status.Sessions[j]
			for k := range s.Queues {
				if sq := &s.Queues[k]; sq.ID == qst.ID {
					sq.Delivered, sq.Overlaps, sq.OverlapsWon = stats.Delivered[s.Run], stats.Overlaps[s.Run], stats.Won[s.Run]
				}
			}
		}
	}
}

// restore stops the forwarders, restores the workload, and once its old
// pods stopped, drains what is left back to the original queues and
// deletes the temporary ones.
func (r *SplitReconciler) restore(ctx context.Context, qs *queuesv1.QueueSplit, rs *resolvedSplit, sr *splitRun) error {
	st := &qs.Status
	r.stop(client.ObjectKeyFromObject(qs), false)
	if p := st.Patch; p != nil {
		err := r.O.editWorkload(ctx, qs.Namespace, rs.target, func(w workload) error {
			c, err := w.container(p.Container)
			if err != nil {
				return err
			}
			if isPatched(c, p.Patched) {
				restoreEnv(c, p.Original, p.Added)
			}
			delete(w.meta().Annotations, AnnotationSplit)
			return nil
		})
		if err != nil && !isNotFound(err) {
			return fmt.Errorf("restoring %s: %w", rs.target, err)
		}
		w, err := r.O.getWorkload(ctx, qs.Namespace, rs.target)
		if err == nil {
			if done, why := rolledOut(w); !done {
				st.Message = fmt.Sprintf("restoring %s: %s", rs.target, why)
				return nil
			}
			if err := r.O.deletePatchedReplicaSets(ctx, w, p); err != nil {
				return err
			}
		}
	}
	var errs []string
	for i := 0; i < len(st.Sessions); i++ {
		s := &st.Sessions[i]
		if !s.Ending {
			continue // a new one waits for the restoring to end; a failed one to be told
		}
		if err := r.endSession(ctx, qs, rs, sr, s, true); err != nil {
			errs = append(errs, err.Error())
			continue
		}
		if s.Error == "" {
			st.Sessions = slices.Delete(st.Sessions, i, i+1)
			i--
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("ending sessions: %s", strings.Join(errs, "; "))
	}
	drained := 0
	for _, qst := range st.Queues {
		q, ok := rs.queue(qst.ID)
		if !ok {
			continue
		}
		b, err := r.broker(sr, q)
		if err != nil {
			return err
		}
		fb := queue.Queue{Name: qst.Fallback, Group: qst.FallbackGroup}
		idle, err := b.Idle(ctx, fb)
		if err != nil {
			return err
		}
		if !idle {
			st.Message = fmt.Sprintf("restoring %s: waiting for its old pods to stop consuming %s", rs.target, fb)
			return nil
		}
		n, err := queue.Drain(ctx, b, fb, q.source)
		drained += n
		if err != nil {
			return err
		}
		if err := b.Delete(ctx, fb); err != nil {
			return err
		}
	}
	failed := st.Phase == queuesv1.PhaseFailed
	st.Patch, st.Queues = nil, nil
	st.Phase, st.Message = queuesv1.PhaseIdle, ""
	if failed {
		st.Phase = queuesv1.PhaseFailed
	}
	r.O.log().Info("workload restored", "namespace", qs.Namespace, "target", rs.target.String(), "drained", drained)
	r.O.event(ctx, qs.Namespace, rs.target, corev1.EventTypeNormal, ReasonRestored, "restored %s's queues: %d messages left on the fallback queues went back to the original ones; the temporary queues are deleted", rs.target, drained)
	return nil
}

// SetupWithManager watches the QueueSplits.
func (r *SplitReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).Named("tether-queuesplits").
		For(&queuesv1.QueueSplit{}).
		Complete(r)
}
