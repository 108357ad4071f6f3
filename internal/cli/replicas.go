package cli

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/progress"
	"github.com/tether-dev/tether/internal/session"
)

// replicaWatch keeps a session's replicas (session.AddReplica) in step
// with the ready pods of its workload target: every ready pod but the
// representative one (whose agent the session itself uses for the
// program's context) gets an agent, started in parallel, and the session's
// incoming subscriptions; a pod that stops being ready or goes is dropped
// without disturbing the others. It follows scaling, rollouts and
// evictions through a watch on the workload's pods.
type replicaWatch struct {
	att *attachment
	sel labels.Selector
	ns  string
	pw  *progress.Writer // per-pod agent events

	mu      sync.Mutex
	sess    *session.Session // nil until attach
	pods    map[types.UID]*replicaPod
	seen    map[types.UID]*corev1.Pod // the workload's pods as last seen
	stopped bool
	cancel  context.CancelFunc
}

// replicaPod is one replica: its pod, its agent, the goroutine that
// starts the agent (again, with backoff, until it runs).
type replicaPod struct {
	name   string
	uid    types.UID
	cancel context.CancelFunc
	// started is closed once the first attempt to start its agent and
	// connect the session to it has ended, either way (markStarted).
	started     chan struct{}
	startedOnce sync.Once
	done        chan struct{} // closed when its run ends

	mu       sync.Mutex
	resolved *kube.Resolved
	agent    *kube.Agent
	created  bool      // some attempt created its agent
	joined   bool      // the session has connected to its agent
	ensured  time.Time // when its agent was asked for
}

func (rp *replicaPod) markStarted() { rp.startedOnce.Do(func() { close(rp.started) }) }

// Replica agent retries back off up to replicaRetryMax.
const replicaRetryMax = 30 * time.Second

// newReplicaWatch starts the agents of a workload target's other ready
// pods (rep is the representative one, resolved already), at once: they
// come up while the representative's agent does. Nil when the target has
// no replicas to cover (a pod, a job, targetless), incoming traffic is
// off, or incoming.replicas is one.
func newReplicaWatch(ctx context.Context, att *attachment, cfg *config.Config, rep *kube.Resolved, pw *progress.Writer) (*replicaWatch, error) {
	if !kube.HasReplicas(att.spec.Kind) || cfg.IncomingMode() == "off" || cfg.IncomingReplicas() == "one" || rep.Pod == nil {
		return nil, nil
	}
	sel, err := att.resolver().PodSelector(ctx, att.k.namespace, att.spec)
	if err != nil {
		return nil, err
	}
	list, err := att.k.client.CoreV1().Pods(att.k.namespace).List(ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		return nil, fmt.Errorf("listing the pods of %s: %w", att.spec, err)
	}
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	w := &replicaWatch{att: att, sel: sel, ns: att.k.namespace, pw: pw, pods: map[types.UID]*replicaPod{}, seen: map[types.UID]*corev1.Pod{}, cancel: cancel}
	for i := range list.Items {
		p := &list.Items[i]
		w.seen[p.UID] = p
	}
	w.reconcile()
	go w.watch(wctx, list.ResourceVersion)
	return w, nil
}

// attach gives the replicas to sess: those whose agent runs join it now,
// later ones when their agent does. It waits for the first attempt of
// each replica started so far (bounded by ctx), so that the session
// starts on all the pods it can.
func (w *replicaWatch) attach(ctx context.Context, sess *session.Session) {
	w.mu.Lock()
	w.sess = sess
	var pods []*replicaPod
	for _, rp := range w.pods {
		pods = append(pods, rp)
	}
	w.mu.Unlock()
	for _, rp := range pods {
		rp.mu.Lock()
		ag := rp.agent
		rp.mu.Unlock()
		if ag != nil {
			w.join(rp)
		}
	}
	for _, rp := range pods {
		select {
		case <-rp.started:
		case <-ctx.Done():
			return
		}
	}
}

// count is the number of pods the session's incoming traffic comes from:
// the representative and every replica the session has connected to.
func (w *replicaWatch) count() int {
	if w == nil {
		return 1
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 1
	for _, rp := range w.pods {
		rp.mu.Lock()
		if rp.joined {
			n++
		}
		rp.mu.Unlock()
	}
	return n
}

// stop ends the watch; abort (the session never started) also removes the
// agents the replicas created.
func (w *replicaWatch) stop(abort bool) {
	if w == nil {
		return
	}
	w.mu.Lock()
	w.stopped = true
	w.cancel()
	pods := w.pods
	w.pods = map[types.UID]*replicaPod{}
	w.mu.Unlock()
	for _, rp := range pods {
		rp.cancel() // no more retries
	}
	if !abort {
		return
	}
	var wg sync.WaitGroup
	for _, rp := range pods {
		wg.Go(func() {
			<-rp.done // no agent is being created any more
			rp.mu.Lock()
			ag, created := rp.agent, rp.created
			rp.mu.Unlock()
			if ag != nil && created {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				w.att.mgr.Remove(ctx, ag)
				cancel()
			}
		})
	}
	wg.Wait()
}

// representative is called when the session's own agent moved to the pod
// uid (its earlier pod went): that pod stops being a replica, and the
// session's reconnect takes over its replica's agent session (so its
// subscriptions never lapse); the old pod may become a replica.
func (w *replicaWatch) representative(uid types.UID) {
	if w == nil {
		return
	}
	w.mu.Lock()
	rp := w.pods[uid]
	delete(w.pods, uid)
	sess := w.sess
	w.mu.Unlock()
	if rp != nil {
		rp.cancel()
		if sess != nil {
			sess.AdoptReplica(string(uid))
		}
	}
	w.reconcile()
}

// reconcile starts a replica for every ready pod but the representative
// and drops those of pods that are gone or not ready.
func (w *replicaWatch) reconcile() {
	var repUID types.UID
	if r, _ := w.att.current(); r != nil && r.Pod != nil {
		repUID = r.Pod.UID
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stopped {
		return
	}
	// New replicas for ready pods; a replica stays while its pod lives,
	// terminating included: a pod scaled away still gets requests until
	// the Service has dropped it, and they are the session's too.
	want := map[types.UID]*corev1.Pod{}
	for uid, p := range w.seen {
		if uid == repUID {
			continue
		}
		ended := p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
		if kube.PodReady(p) || (w.pods[uid] != nil && !ended) {
			want[uid] = p
		}
	}
	for uid, rp := range w.pods {
		if want[uid] == nil {
			delete(w.pods, uid)
			rp.cancel()
			if w.sess != nil {
				go w.sess.RemoveReplica(string(uid))
			}
			w.pw.Pod(rp.name, progress.PodGone, "gone; its incoming traffic is no longer the session's")
		}
	}
	for uid, p := range want {
		if w.pods[uid] != nil {
			continue
		}
		ctx, cancel := context.WithCancel(context.Background())
		rp := &replicaPod{name: p.Name, uid: uid, cancel: cancel, started: make(chan struct{}), done: make(chan struct{})}
		w.pods[uid] = rp
		go w.run(ctx, rp)
	}
}

// run starts rp's agent, retrying with backoff until it runs or rp is
// dropped, and then joins rp to the session.
func (w *replicaWatch) run(ctx context.Context, rp *replicaPod) {
	defer close(rp.done)
	joined := false
	defer func() {
		if !joined {
			rp.markStarted() // dropped before its agent ran
		}
	}()
	w.pw.Pod(rp.name, progress.PodAgentStarting, "starting its agent")
	backoff := time.Second
	var said string
	for ctx.Err() == nil {
		err := w.ensure(ctx, rp)
		if err == nil {
			what := "agent ready"
			rp.mu.Lock()
			starting := rp.agent.Starting
			rp.mu.Unlock()
			if starting {
				what = "agent pod on its node, starting"
			}
			w.pw.Pod(rp.name, progress.PodAgentReady, "%s", what)
			joined = true
			w.join(rp) // it marks rp started once connected
			return
		}
		if ctx.Err() != nil {
			return
		}
		if err.Error() != said {
			// Once per reason; the other pods keep stealing meanwhile.
			w.pw.Pod(rp.name, progress.PodAgentFailed, "its agent cannot start: %v; retrying with backoff (the other pods' traffic is unaffected)", err)
			said = err.Error()
		}
		rp.markStarted() // the first attempt failed: start-up waits no longer
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, replicaRetryMax)
	}
}

// ensure resolves rp's pod and finds or starts its agent.
func (w *replicaWatch) ensure(ctx context.Context, rp *replicaPod) error {
	resolved, err := w.att.resolver().Resolve(ctx, w.ns, kube.TargetSpec{Kind: kube.KindPod, Name: rp.name, Container: w.att.spec.Container})
	if err != nil {
		return err
	}
	if resolved.Pod.UID != rp.uid {
		return fmt.Errorf("the pod was replaced by another of the same name")
	}
	mgr := w.att.mgr
	opts := w.att.opts
	opts.Early = true // dialled until it answers (see going)
	ensured := time.Now()
	ag, err := mgr.Ensure(ctx, resolved, opts)
	if err != nil {
		return err
	}
	rp.mu.Lock()
	rp.resolved, rp.agent, rp.ensured = resolved, ag, ensured
	rp.created = rp.created || ag.Created
	rp.mu.Unlock()
	return nil
}

// join adds rp to the session, once there is one and rp's agent runs.
func (w *replicaWatch) join(rp *replicaPod) {
	w.mu.Lock()
	sess := w.sess
	current := w.pods[rp.uid] == rp
	w.mu.Unlock()
	if !current {
		rp.markStarted()
		return
	}
	if sess == nil {
		return // attach joins it
	}
	ready := sess.AddReplica(string(rp.uid), rp.name,
		func(ctx context.Context) (net.Conn, session.Credentials, error) { return w.dial(ctx, rp) },
		func(ctx context.Context) error { return w.going(ctx, rp) })
	go func() {
		if err := <-ready; err == nil {
			rp.mu.Lock()
			rp.joined = true
			rp.mu.Unlock()
			w.pw.Pod(rp.name, progress.PodConnected, "connected; its incoming traffic is the session's")
		}
		rp.markStarted()
	}()
}

// dial opens a port-forward stream to rp's agent. When that agent no
// longer serves (deleted, ended with a restarted container), it starts a
// new one for the pod first.
func (w *replicaWatch) dial(ctx context.Context, rp *replicaPod) (net.Conn, session.Credentials, error) {
	rp.mu.Lock()
	ag, resolved := rp.agent, rp.resolved
	rp.mu.Unlock()
	k := w.att.k
	if ag.Target != "" && containerChanged(ctx, k.client, resolved) {
		// Its node's agent lives on, but not for the container it had.
		if gerr := w.going(ctx, rp); gerr != nil {
			return nil, session.Credentials{}, gerr
		}
		if err := w.ensure(ctx, rp); err != nil {
			return nil, session.Credentials{}, fmt.Errorf("its container restarted, and its agent cannot serve the new one: %w", err)
		}
		rp.mu.Lock()
		ag = rp.agent
		rp.mu.Unlock()
	}
	conn, err := k.dialAgent(ctx, ag)
	if err == nil {
		return conn, credentials(ag), nil
	}
	if gerr := w.going(ctx, rp); gerr != nil {
		return nil, session.Credentials{}, fmt.Errorf("%w (%v)", gerr, err)
	}
	if alive, _ := w.att.agentServes(ctx, ag); alive {
		return nil, session.Credentials{}, err
	}
	if err := w.ensure(ctx, rp); err != nil {
		return nil, session.Credentials{}, fmt.Errorf("its agent %s/%s is gone, and a new one cannot start: %w", ag.Namespace, ag.Pod, err)
	}
	rp.mu.Lock()
	ag = rp.agent
	rp.mu.Unlock()
	conn, err = k.dialAgent(ctx, ag)
	return conn, credentials(ag), err
}

// going returns session.ErrReplicaGone when rp's pod is deleted, being
// deleted or replaced: its agent ends with it, and the watch drops it;
// session.ErrReplicaStarting while its new agent has not started within
// agent.startup_timeout and its pod does not say it cannot.
func (w *replicaWatch) going(ctx context.Context, rp *replicaPod) error {
	p, err := w.att.k.client.CoreV1().Pods(w.ns).Get(ctx, rp.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) || (err == nil && (p.UID != rp.uid || p.DeletionTimestamp != nil)) {
		return session.ErrReplicaGone
	}
	rp.mu.Lock()
	ag, ensured := rp.agent, rp.ensured
	rp.mu.Unlock()
	if ag == nil || !ag.Starting || time.Since(ensured) > w.att.opts.StartupTimeout {
		return nil
	}
	ap, err := w.att.k.client.CoreV1().Pods(ag.Namespace).Get(ctx, ag.Pod, metav1.GetOptions{})
	if err == nil && ap.DeletionTimestamp == nil && kube.AgentPodState(ap) == nil {
		return session.ErrReplicaStarting
	}
	return nil
}

// watch follows the workload's pods until ctx ends: every change is
// reconciled. A broken watch is started again from a new list.
func (w *replicaWatch) watch(ctx context.Context, rv string) {
	pods := w.att.k.client.CoreV1().Pods(w.ns)
	backoff := podWatchRetryMin
	for ctx.Err() == nil {
		if rv == "" {
			list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: w.sel.String()})
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, PodWatchRetryMax)
				continue
			}
			w.mu.Lock()
			w.seen = map[types.UID]*corev1.Pod{}
			for i := range list.Items {
				w.seen[list.Items[i].UID] = &list.Items[i]
			}
			w.mu.Unlock()
			w.reconcile()
			rv = list.ResourceVersion
		}
		wi, err := pods.Watch(ctx, metav1.ListOptions{LabelSelector: w.sel.String(), ResourceVersion: rv})
		if err != nil {
			rv = ""
			continue
		}
		backoff = podWatchRetryMin
		rv = w.events(ctx, wi, rv)
	}
}

// events applies wi's events until it ends; it returns the resource
// version to watch from next ("" to list again).
func (w *replicaWatch) events(ctx context.Context, wi watch.Interface, rv string) string {
	defer wi.Stop()
	for {
		select {
		case <-ctx.Done():
			return rv
		case ev, ok := <-wi.ResultChan():
			if !ok {
				return rv
			}
			p, isPod := ev.Object.(*corev1.Pod)
			switch {
			case ev.Type == watch.Error:
				return "" // e.g. too old a resource version
			case !isPod:
				continue
			case ev.Type == watch.Bookmark:
				rv = p.ResourceVersion
				continue
			}
			w.mu.Lock()
			if ev.Type == watch.Deleted {
				delete(w.seen, p.UID)
			} else {
				w.seen[p.UID] = p
			}
			w.mu.Unlock()
			rv = p.ResourceVersion
			w.reconcile()
		}
	}
}
