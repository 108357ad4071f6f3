package operator

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/predicate"

	"github.com/tether-dev/tether/internal/kube"
)

// AgentReconciler polls every agent pod of the operator's namespace, for
// as long as it runs, and feeds what it reports to the Watcher.
type AgentReconciler struct {
	Client  client.Client
	Watcher *Watcher
	// Every is the poll interval (default 2 s).
	Every time.Duration
}

// Reconcile polls one agent pod.
func (r *AgentReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var p corev1.Pod
	err := r.Client.Get(ctx, req.NamespacedName, &p)
	if apierrors.IsNotFound(err) {
		return ctrl.Result{}, r.Watcher.Observe(ctx, req.Name, nil)
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	switch {
	case p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed:
		return ctrl.Result{}, r.Watcher.Observe(ctx, p.Name, nil)
	case p.Status.Phase != corev1.PodRunning || p.Status.PodIP == "":
		return ctrl.Result{}, nil // an update brings it back
	}
	every := r.Every
	if every == 0 {
		every = 2 * time.Second
	}
	if err := r.Watcher.Observe(ctx, p.Name, &p); err != nil {
		r.Watcher.O.log().Debug("polling an agent", "agent", p.Name, "err", err)
	}
	return ctrl.Result{RequeueAfter: every}, nil
}

// SetupWithManager watches the agent pods.
func (r *AgentReconciler) SetupWithManager(mgr ctrl.Manager) error {
	isAgent := predicate.NewPredicateFuncs(func(o client.Object) bool { return o.GetLabels()[kube.LabelApp] == kube.AppAgent })
	return ctrl.NewControllerManagedBy(mgr).Named("tether-agents").
		For(&corev1.Pod{}, builder.WithPredicates(isAgent)).
		Complete(r)
}
