package operator

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	queuesv1 "github.com/tether-dev/tether/api/queues/v1alpha1"
	"github.com/tether-dev/tether/internal/kube"
	"github.com/tether-dev/tether/internal/queue"
)

// splitQueue is one queue of a QueueSplit as its workload reads it when
// not split: the variables' values, the queue and the broker settings.
type splitQueue struct {
	spec       queuesv1.SplitQueue
	nameValue  string // NameFrom's variable's value
	groupValue string // GroupFrom's, Kafka
	source     queue.Queue
	settings   BrokerSettings
}

// fallback is the queue (and group) the deployed workload reads while
// the split runs.
func (q splitQueue) fallback() queue.Queue {
	return queue.Queue{Name: fallbackName(q.source.Name), Group: fallbackName(q.source.Group)}
}

// forSession is run's queue.
func (q splitQueue) forSession(run string) queue.Queue {
	return queue.Queue{Name: sessionQueueName(q.source.Name, run), Group: sessionQueueName(q.source.Group, run)}
}

// env is what makes the workload's program read dest instead of source.
func (q splitQueue) env(dest queue.Queue) ([]corev1.EnvVar, error) {
	name, err := withName(q.spec.NameFrom, q.nameValue, dest.Name)
	if err != nil {
		return nil, err
	}
	vars := []corev1.EnvVar{{Name: q.spec.NameFrom.Env, Value: name}}
	if g := q.spec.GroupFrom; g != nil && g.Env != "" {
		group, err := withName(*g, q.groupValue, dest.Group)
		if err != nil {
			return nil, err
		}
		vars = append(vars, corev1.EnvVar{Name: g.Env, Value: group})
	}
	return vars, nil
}

// resolvedSplit is a QueueSplit with its workload.
type resolvedSplit struct {
	qs     *queuesv1.QueueSplit
	target kube.TargetSpec
	w      workload
	queues []splitQueue
}

func (r *resolvedSplit) queue(id string) (splitQueue, bool) {
	for _, q := range r.queues {
		if q.spec.ID == id {
			return q, true
		}
	}
	return splitQueue{}, false
}

// resolveSplit reads qs's workload and what its queues are when not
// split (a patched workload's original environment).
func (o *Operator) resolveSplit(ctx context.Context, qs *queuesv1.QueueSplit) (*resolvedSplit, error) {
	if err := validateSplit(qs); err != nil {
		return nil, err
	}
	target, _ := splitTarget(qs)
	w, err := o.getWorkload(ctx, qs.Namespace, target)
	if err != nil {
		return nil, fmt.Errorf("the QueueSplit's target %s in %s: %w", target, qs.Namespace, err)
	}
	c, err := w.container(qs.Spec.Container)
	if err != nil {
		return nil, fmt.Errorf("%s in %s: %w", target, qs.Namespace, err)
	}
	c = c.DeepCopy()
	if p := qs.Status.Patch; p != nil {
		restoreEnv(c, p.Original, p.Added)
	}
	rs := &resolvedSplit{qs: qs, target: target, w: w}
	for _, q := range qs.Spec.Queues {
		sq := splitQueue{spec: q}
		val, _, err := o.envValue(ctx, qs.Namespace, c, q.NameFrom.Env)
		if err != nil {
			return nil, fmt.Errorf("queue %q: %w", q.ID, err)
		}
		sq.nameValue = val
		if sq.source.Name, err = nameIn(q.NameFrom, val); err != nil {
			return nil, fmt.Errorf("queue %q: %w", q.ID, err)
		}
		if g := q.GroupFrom; g != nil && g.Env != "" {
			if sq.groupValue, _, err = o.envValue(ctx, qs.Namespace, c, g.Env); err != nil {
				return nil, fmt.Errorf("queue %q: its group: %w", q.ID, err)
			}
			if sq.source.Group, err = nameIn(*g, sq.groupValue); err != nil {
				return nil, fmt.Errorf("queue %q: its group: %w", q.ID, err)
			}
		}
		if sq.settings, err = o.brokerSettings(ctx, qs.Namespace, q, c); err != nil {
			return nil, err
		}
		rs.queues = append(rs.queues, sq)
	}
	return rs, nil
}

// patchFor is the patch that points w's container at the fallback
// queues, and what it replaces.
func (rs *resolvedSplit) patchFor() (*queuesv1.WorkloadPatch, error) {
	c, err := rs.w.container(rs.qs.Spec.Container)
	if err != nil {
		return nil, err
	}
	if p := rs.qs.Status.Patch; p != nil {
		c = c.DeepCopy()
		restoreEnv(c, p.Original, p.Added)
	}
	p := &queuesv1.WorkloadPatch{Container: c.Name}
	for _, q := range rs.queues {
		vars, err := q.env(q.fallback())
		if err != nil {
			return nil, fmt.Errorf("queue %q: %w", q.spec.ID, err)
		}
		for _, v := range vars {
			found := false
			for _, e := range c.Env {
				if e.Name == v.Name {
					p.Original = append(p.Original, e)
					found = true
				}
			}
			if !found {
				p.Added = append(p.Added, v.Name)
			}
			p.Patched = append(p.Patched, v)
		}
	}
	return p, nil
}
