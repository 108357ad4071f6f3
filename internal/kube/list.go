package kube

import (
	"context"
	"sort"
	"strconv"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TargetInfo is one entry of `tether ls`.
type TargetInfo struct {
	Target string `json:"target"` // what to pass to -t
	Ready  bool   `json:"ready"`  // a pod that can be targeted now
	Info   string `json:"info,omitempty"`
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
		out = append(out, TargetInfo{Target: "deployment/" + d.Name, Ready: d.Status.ReadyReplicas > 0, Info: readyOf(d.Status.ReadyReplicas, d.Status.Replicas)})
	}
	sts, err := r.Client.AppsV1().StatefulSets(ns).List(ctx, opts)
	if err != nil {
		return nil, forbiddenHint(err, "list", "statefulsets", ns)
	}
	for _, s := range sts.Items {
		out = append(out, TargetInfo{Target: "statefulset/" + s.Name, Ready: s.Status.ReadyReplicas > 0, Info: readyOf(s.Status.ReadyReplicas, s.Status.Replicas)})
	}
	rss, err := r.Client.AppsV1().ReplicaSets(ns).List(ctx, opts)
	if err != nil {
		return nil, forbiddenHint(err, "list", "replicasets", ns)
	}
	for _, s := range rss.Items {
		if len(s.OwnerReferences) > 0 || s.Status.Replicas == 0 {
			continue // owned by a deployment: target that instead
		}
		out = append(out, TargetInfo{Target: "replicaset/" + s.Name, Ready: s.Status.ReadyReplicas > 0, Info: readyOf(s.Status.ReadyReplicas, s.Status.Replicas)})
	}
	jobs, err := r.Client.BatchV1().Jobs(ns).List(ctx, opts)
	if err != nil {
		return nil, forbiddenHint(err, "list", "jobs", ns)
	}
	for _, j := range jobs.Items {
		if j.Labels[LabelApp] == AppAgent {
			continue // tether's own agents
		}
		out = append(out, TargetInfo{Target: "job/" + j.Name, Ready: j.Status.Active > 0})
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
		if len(p.Spec.Containers) == 1 {
			out = append(out, TargetInfo{Target: "pod/" + p.Name, Ready: ready, Info: info})
			continue
		}
		for _, c := range p.Spec.Containers {
			out = append(out, TargetInfo{Target: "pod/" + p.Name + "/container/" + c.Name, Ready: ready, Info: info})
		}
	}
	return out, nil
}

func readyOf(ready, total int32) string {
	return strconv.Itoa(int(ready)) + "/" + strconv.Itoa(int(total)) + " ready"
}
