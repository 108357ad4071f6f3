// Package deploy holds tether-operator's manifests as Go objects: what
// `tether operator install` applies, what deploy/ and the Helm chart
// carry (generated from here, and checked to match by a test), and what
// `tether operator uninstall` removes.
package deploy

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	policiesv1 "github.com/tether-dev/tether/api/policies/v1alpha1"
	queuesv1 "github.com/tether-dev/tether/api/queues/v1alpha1"
	"github.com/tether-dev/tether/api/v1alpha1"
)

// Names of the operator's objects.
const (
	DefaultNamespace = "tether-system"
	Name             = "tether-operator"
	// APIServiceName registers tether's API with the API server.
	APIServiceName = "v1alpha1." + v1alpha1.GroupName
	// TLSSecret holds the operator's serving certificate (it makes it).
	TLSSecret = "tether-operator-tls"
	// UserRole and AdminRole are the ClusterRoles a platform team binds:
	// tether-user in a namespace lets a developer run sessions there;
	// tether-admin adds ending anyone's sessions (tether sessions kill).
	UserRole  = "tether-user"
	AdminRole = "tether-admin"
	// LabelPartOf marks every object install makes; uninstall removes
	// what carries it.
	LabelPartOf = "app.kubernetes.io/part-of"
	PartOf      = "tether"
)

// Options are what an install may change.
type Options struct {
	Namespace    string
	Image        string // the operator's image
	AgentImage   string
	Replicas     int32
	PullPolicy   corev1.PullPolicy
	AgentLinger  string // a duration; "" the operator's default
	SessionGrace string
}

func (o *Options) defaults() {
	if o.Namespace == "" {
		o.Namespace = DefaultNamespace
	}
	if o.Replicas == 0 {
		o.Replicas = 2
	}
	if o.PullPolicy == "" {
		o.PullPolicy = corev1.PullIfNotPresent
	}
}

func labels(extra ...string) map[string]string {
	l := map[string]string{LabelPartOf: PartOf, "app.kubernetes.io/managed-by": "tether"}
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return l
}

func meta(name, ns string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels()}
}

// Objects returns the manifests, in the order they are applied.
func Objects(o Options) ([]runtime.Object, error) {
	o.defaults()
	if o.Image == "" || o.AgentImage == "" {
		return nil, fmt.Errorf("the operator's and the agent's images are needed")
	}
	ns := o.Namespace
	podLabels := map[string]string{"app.kubernetes.io/name": Name}
	args := []string{"--namespace=" + ns, "--agent-image=" + o.AgentImage, fmt.Sprintf("--secure-port=%d", 8443)}
	if o.AgentLinger != "" {
		args = append(args, "--agent-linger="+o.AgentLinger)
	}
	if o.SessionGrace != "" {
		args = append(args, "--session-grace="+o.SessionGrace)
	}
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromString("https"), Scheme: corev1.URISchemeHTTPS}}, PeriodSeconds: 5}
	}
	nsObj := &corev1.Namespace{ObjectMeta: meta(ns, "")}
	// The agents enter other containers' namespaces: privileged pods.
	nsObj.Labels["pod-security.kubernetes.io/enforce"] = "privileged"
	crdObjs, err := crds()
	if err != nil {
		return nil, err
	}
	var objs []runtime.Object
	for _, c := range crdObjs {
		objs = append(objs, c)
	}
	objs = append(objs,
		nsObj,
		&corev1.ServiceAccount{ObjectMeta: meta(Name, ns), AutomountServiceAccountToken: ptr.To(true)},
		&rbacv1.ClusterRole{ObjectMeta: meta(Name, ""), Rules: operatorClusterRules()},
		&rbacv1.ClusterRoleBinding{ObjectMeta: meta(Name, ""), RoleRef: clusterRole(Name), Subjects: operatorSubject(ns)},
		// TokenReviews and SubjectAccessReviews: delegated authn/authz.
		&rbacv1.ClusterRoleBinding{ObjectMeta: meta(Name+"-auth-delegator", ""), RoleRef: clusterRole("system:auth-delegator"), Subjects: operatorSubject(ns)},
		// The front proxy's CA and header names, which the API server publishes there.
		&rbacv1.RoleBinding{ObjectMeta: meta(Name+"-auth-reader", "kube-system"),
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "extension-apiserver-authentication-reader"},
			Subjects: operatorSubject(ns)},
		&rbacv1.Role{ObjectMeta: meta(Name, ns), Rules: operatorNamespaceRules()},
		&rbacv1.RoleBinding{ObjectMeta: meta(Name, ns), RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: Name}, Subjects: operatorSubject(ns)},
		&rbacv1.ClusterRole{ObjectMeta: meta(UserRole, ""), Rules: userRules()},
		&rbacv1.ClusterRole{ObjectMeta: meta(AdminRole, ""), Rules: append(userRules(), rbacv1.PolicyRule{
			APIGroups: []string{v1alpha1.GroupName}, Resources: []string{v1alpha1.ResourceSessions}, Verbs: []string{"delete"}},
			// Policies (bound in a namespace) and ClusterPolicies (bound
			// cluster-wide).
			rbacv1.PolicyRule{APIGroups: []string{policiesv1.GroupName}, Resources: []string{policiesv1.ResourcePolicies, policiesv1.ResourceClusterPolicies},
				Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}})},
		&corev1.Service{ObjectMeta: meta(Name, ns), Spec: corev1.ServiceSpec{
			Selector: podLabels,
			Ports:    []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromString("https")}},
		}},
		&appsv1.Deployment{ObjectMeta: meta(Name, ns), Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(o.Replicas),
			Selector: &metav1.LabelSelector{MatchLabels: podLabels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: mergeLabels(podLabels, labels())},
				Spec: corev1.PodSpec{
					ServiceAccountName: Name,
					SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](65532), SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
					// Replicas on different nodes when there are several.
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
						Weight: 100, PodAffinityTerm: corev1.PodAffinityTerm{TopologyKey: "kubernetes.io/hostname", LabelSelector: &metav1.LabelSelector{MatchLabels: podLabels}},
					}}}},
					Containers: []corev1.Container{{
						Name: "operator", Image: o.Image, ImagePullPolicy: o.PullPolicy, Args: args,
						Env:            []corev1.EnvVar{{Name: "POD_NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}},
						Ports:          []corev1.ContainerPort{{Name: "https", ContainerPort: 8443}},
						ReadinessProbe: probe("/readyz"), LivenessProbe: probe("/livez"),
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
					}},
				},
			},
		}},
		apiService(ns),
	)
	return objs, nil
}

func mergeLabels(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}

func clusterRole(name string) rbacv1.RoleRef {
	return rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: name}
}

func operatorSubject(ns string) []rbacv1.Subject {
	return []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: Name, Namespace: ns}}
}

var read = []string{"get", "list", "watch"}

// operatorClusterRules: read the targets of every namespace, record
// Events on them, trust its own CA in its APIService.
func operatorClusterRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "services", "namespaces"}, Verbs: read},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets", "statefulsets", "daemonsets"}, Verbs: read},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: read},
		{APIGroups: []string{"argoproj.io"}, Resources: []string{"rollouts"}, Verbs: read},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
		// Queue splitting: the QueueSplits' state, the consuming
		// workloads' env (patched and restored), the values their
		// brokers' settings come from.
		{APIGroups: []string{queuesv1.GroupName}, Resources: []string{queuesv1.Resource}, Verbs: []string{"get", "list", "watch", "update"}},
		{APIGroups: []string{queuesv1.GroupName}, Resources: []string{queuesv1.Resource + "/status", queuesv1.Resource + "/finalizers"}, Verbs: []string{"get", "update", "patch"}},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets"}, Verbs: []string{"update", "patch"}},
		// The patched ReplicaSet, once the rollout back left it empty.
		{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"delete"}},
		{APIGroups: []string{""}, Resources: []string{"configmaps", "secrets"}, Verbs: []string{"get"}},
		{APIGroups: []string{"apiregistration.k8s.io"}, Resources: []string{"apiservices"}, ResourceNames: []string{APIServiceName}, Verbs: []string{"get", "patch"}},
		// Policies, and for their hostname rules the addresses behind
		// the Services.
		{APIGroups: []string{policiesv1.GroupName}, Resources: []string{policiesv1.ResourcePolicies, policiesv1.ResourceClusterPolicies}, Verbs: read},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
	}
}

// operatorNamespaceRules: its agents, its certificate, its leader lease.
func operatorNamespaceRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"batch"}, Resources: []string{"jobs"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list", "watch", "create", "delete"}},
		{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get", "create"}},
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "create", "update"}},
		{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch", "update"}},
	}
}

// userRules: sessions on the namespace's targets (use, mirror, steal),
// seeing its sessions, and reading what tether resolves a target with.
// Nothing privileged: no pods/exec, pods/portforward, jobs, ephemeral
// containers.
func userRules() []rbacv1.PolicyRule {
	g := []string{v1alpha1.GroupName}
	return []rbacv1.PolicyRule{
		{APIGroups: g, Resources: []string{v1alpha1.ResourceTargets}, Verbs: []string{"get", "list", v1alpha1.VerbUse, v1alpha1.VerbMirror, v1alpha1.VerbSteal}},
		{APIGroups: g, Resources: []string{v1alpha1.ResourceTargets + "/" + v1alpha1.SubresourceConnect}, Verbs: []string{"create", "get"}},
		{APIGroups: g, Resources: []string{v1alpha1.ResourceSessions}, Verbs: []string{"get", "list"}},
		// Queue splitting: a session's split, and seeing the splits.
		{APIGroups: g, Resources: []string{v1alpha1.ResourceTargets + "/" + v1alpha1.SubresourceSplit}, Verbs: []string{"create"}},
		// tether policy check: the policies a session on a target gets.
		{APIGroups: g, Resources: []string{v1alpha1.ResourceTargets + "/" + v1alpha1.SubresourcePolicy}, Verbs: []string{"get"}},
		{APIGroups: []string{queuesv1.GroupName}, Resources: []string{queuesv1.Resource}, Verbs: read},
		// The namespace's Policies (what tether policy check reads is
		// the operator's targets/policy, which has the ClusterPolicies).
		{APIGroups: []string{policiesv1.GroupName}, Resources: []string{policiesv1.ResourcePolicies}, Verbs: read},
		{APIGroups: []string{""}, Resources: []string{"pods", "services"}, Verbs: read},
		{APIGroups: []string{"apps"}, Resources: []string{"deployments", "replicasets", "statefulsets", "daemonsets"}, Verbs: read},
		{APIGroups: []string{"batch"}, Resources: []string{"jobs", "cronjobs"}, Verbs: read},
		{APIGroups: []string{"argoproj.io"}, Resources: []string{"rollouts"}, Verbs: read},
	}
}
