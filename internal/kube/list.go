package kube

import (
	"context"
	"sort"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// TargetInfo is one entry of `tether ls`.
type TargetInfo struct {
	Target string `json:"target"` // what to pass to -t
	Ready  bool   `json:"ready"`  // a pod that can be targeted now
	// Pods is how many ready pods a session's incoming traffic covers
	// (every ready pod of a workload or Service; 1 for a ready pod).
	Pods int    `json:"pods"`
	Info string `json:"info,omitempty"`
}

// List returns the targets in ns: workloads first, then pods (with one
// entry per container when a pod has several).
func (r *Resolver) List(ctx context.Context, ns string) ([]TargetInfo, error) {
	var out []TargetInfo
	opts := metav1.ListOptions{}
	deps, err := r.Client.AppsV1().Deployments(ns).List(ctx, opts)
	if err != nil {
		return nil, forbiddenHint(err, "list", "deployments", ns)
	}
	for _, d := range deps.Items {
		out = append(out, TargetInfo{Target: "deployment/" + d.Name, Ready: d.Status.ReadyReplicas > 0, Pods: int(d.Status.ReadyReplicas), Info: readyOf(d.Status.ReadyReplicas, d.Status.Replicas)})
	}
	sts, err := r.Client.AppsV1().StatefulSets(ns).List(ctx, opts)
	if err != nil {
		return nil, forbiddenHint(err, "list", "statefulsets", ns)
	}
	for _, s := range sts.Items {
		out = append(out, TargetInfo{Target: "statefulset/" + s.Name, Ready: s.Status.ReadyReplicas > 0, Pods: int(s.Status.ReadyReplicas), Info: readyOf(s.Status.ReadyReplicas, s.Status.Replicas)})
	}
	rss, err := r.Client.AppsV1().ReplicaSets(ns).List(ctx, opts)
	if err != nil {
		return nil, forbiddenHint(err, "list", "replicasets", ns)
	}
	for _, s := range rss.Items {
		if len(s.OwnerReferences) > 0 || s.Status.Replicas == 0 {
			continue // owned by a deployment: target that instead
		}
		out = append(out, TargetInfo{Target: "replicaset/" + s.Name, Ready: s.Status.ReadyReplicas > 0, Pods: int(s.Status.ReadyReplicas), Info: readyOf(s.Status.ReadyReplicas, s.Status.Replicas)})
	}
	jobs, err := r.Client.BatchV1().Jobs(ns).List(ctx, opts)
	if err != nil {
		return nil, forbiddenHint(err, "list", "jobs", ns)
	}
	for _, j := range jobs.Items {
		if j.Labels[LabelApp] == AppAgent {
			continue // tether's own agents
		}
		out = append(out, TargetInfo{Target: "job/" + j.Name, Ready: j.Status.Active > 0, Pods: min(int(j.Status.Active), 1)})
	}
	cjs, err := r.Client.BatchV1().CronJobs(ns).List(ctx, opts)
	if err == nil {
		for _, c := range cjs.Items {
			out = append(out, TargetInfo{Target: "cronjob/" + c.Name, Ready: len(c.Status.Active) > 0})
		}
	}
	if r.Dynamic != nil {
		if ros, err := r.Dynamic.Resource(rolloutGVR).Namespace(ns).List(ctx, opts); err == nil {
			for _, ro := range ros.Items {
				out = append(out, TargetInfo{Target: "rollout/" + ro.GetName(), Ready: true})
			}
		}
	}
	pods, err := r.Client.CoreV1().Pods(ns).List(ctx, opts)
	if err != nil {
		return nil, forbiddenHint(err, "list", "pods", ns)
	}
	if svcs, err := r.Client.CoreV1().Services(ns).List(ctx, opts); err == nil {
		out = append(out, services(svcs.Items, pods.Items)...)
	}
	sort.Slice(pods.Items, func(i, j int) bool { return pods.Items[i].Name < pods.Items[j].Name })
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Labels[LabelApp] == AppAgent {
			continue
		}
		ready := podReady(p)
		info := string(p.Status.Phase)
		if !ready {
			info = podProblem(p)
		}
		n := 0
		if ready {
			n = 1
		}
		if len(p.Spec.Containers) == 1 {
			out = append(out, TargetInfo{Target: "pod/" + p.Name, Ready: ready, Pods: n, Info: info})
			continue
		}
		for _, c := range p.Spec.Containers {
			out = append(out, TargetInfo{Target: "pod/" + p.Name + "/container/" + c.Name, Ready: ready, Pods: n, Info: info})
		}
	}
	return out, nil
}

// services are the Services with a pod selector, each with its pods.
func services(svcs []corev1.Service, pods []corev1.Pod) []TargetInfo {
	var out []TargetInfo
	for _, s := range svcs {
		if len(s.Spec.Selector) == 0 {
			continue // endpoints set by hand: no pods to target
		}
		sel := labels.SelectorFromSet(s.Spec.Selector)
		var ready, total int32
		for i := range pods {
			p := &pods[i]
			if p.Labels[LabelApp] == AppAgent || !sel.Matches(labels.Set(p.Labels)) {
				continue
			}
			total++
			if podReady(p) {
				ready++
			}
		}
		out = append(out, TargetInfo{Target: "service/" + s.Name, Ready: ready > 0, Pods: int(ready), Info: readyOf(ready, total)})
	}
	return out
}

func readyOf(ready, total int32) string {
	return strconv.Itoa(int(ready)) + "/" + strconv.Itoa(int(total)) + " ready"
}
