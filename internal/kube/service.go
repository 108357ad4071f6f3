package kube

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// serviceSelector is the pod selector of a service/NAME target: the pods
// the Service sends its traffic to.
func (r *Resolver) serviceSelector(ctx context.Context, ns string, spec TargetSpec) (labels.Selector, error) {
	svc, err := r.Client.CoreV1().Services(ns).Get(ctx, spec.Name, metav1.GetOptions{})
	if err != nil {
		return nil, r.notFound(ctx, ns, spec, err)
	}
	if len(svc.Spec.Selector) == 0 {
		return nil, fmt.Errorf("service/%s has no pod selector (its endpoints are set by hand, or it is an ExternalName): target the workload behind it instead (tether ls -n %s lists the targets)", spec.Name, ns)
	}
	return labels.SelectorFromSet(svc.Spec.Selector), nil
}

// PortMap is how a Service's ports reach its pods: a local listener on a
// Service port stands for the pods' target port.
type PortMap struct {
	Service, Pod uint16
	Name         string // the port's name in the Service, if any
}

// ServicePorts maps each TCP port of Service name to the container port of
// pod p it targets (a named targetPort is looked up in p's containers).
// Ports whose target is the same number are left out: nothing to map.
func (r *Resolver) ServicePorts(ctx context.Context, ns, name string, p *corev1.Pod) ([]PortMap, error) {
	svc, err := r.Client.CoreV1().Services(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("reading service/%s: %w", name, err)
	}
	return servicePorts(svc, p)
}

func servicePorts(svc *corev1.Service, p *corev1.Pod) ([]PortMap, error) {
	var out []PortMap
	for _, sp := range svc.Spec.Ports {
		if sp.Protocol != "" && sp.Protocol != corev1.ProtocolTCP {
			continue
		}
		target := uint16(sp.Port) // an unset targetPort is the port
		switch tp := sp.TargetPort; {
		case tp.Type == intstr.Int && tp.IntVal != 0:
			target = uint16(tp.IntVal)
		case tp.Type == intstr.String && tp.StrVal != "":
			n, ok := namedPort(p, tp.StrVal)
			if !ok {
				return nil, fmt.Errorf("service/%s: port %d targets the port named %q, which no container of pod %s declares: fix the Service or the pod's ports", svc.Name, sp.Port, tp.StrVal, p.Name)
			}
			target = n
		}
		if target != uint16(sp.Port) {
			out = append(out, PortMap{Service: uint16(sp.Port), Pod: target, Name: sp.Name})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Service < out[j].Service })
	return out, nil
}

// namedPort finds the container port named name in p.
func namedPort(p *corev1.Pod, name string) (uint16, bool) {
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if strings.EqualFold(cp.Name, name) && (cp.Protocol == "" || cp.Protocol == corev1.ProtocolTCP) {
				return uint16(cp.ContainerPort), true
			}
		}
	}
	return 0, false
}
