package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	certsv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tether-dev/tether/api/v1alpha1"
	"github.com/tether-dev/tether/internal/deploy"
)

const operatorImage = "tether.local/tether-operator:dev"

// installOperator installs tether-operator (short agent linger, so that
// agents are gone soon after the sessions) and uninstalls it when the
// test ends.
func installOperator(t *testing.T) {
	t.Helper()
	dir := t.TempDir()
	out, errOut, code := runTether(t, dir, 4*time.Minute, "operator", "install", "--image", operatorImage, "--agent-image", agentImage, "--agent-linger", "3s", "--timeout", "3m")
	if code != 0 {
		t.Fatalf("tether operator install: exit %d\n%s%s\n%s", code, out, errOut, operatorLogs())
	}
	t.Cleanup(func() { uninstallOperator(t) })
}

// uninstallOperator removes it (idempotent).
func uninstallOperator(t *testing.T) {
	t.Helper()
	out, errOut, code := runTether(t, t.TempDir(), 4*time.Minute, "operator", "uninstall")
	if code != 0 {
		t.Errorf("tether operator uninstall: exit %d\n%s%s", code, out, errOut)
	}
}

// operatorLogs is the operator pods' logs, for failures.
func operatorLogs() string {
	ctx := context.Background()
	pods, err := client.CoreV1().Pods(deploy.DefaultNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		raw, err := client.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{TailLines: ptrTo[int64](150)}).DoRaw(ctx)
		fmt.Fprintf(&b, "--- %s (%s) %v\n%s\n", p.Name, p.Status.Phase, err, raw)
	}
	return b.String()
}

// bindTetherUser grants subject the ClusterRole role in ns.
func bindTetherUser(t *testing.T, ns, name, role string, subject rbacv1.Subject) {
	t.Helper()
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects: []rbacv1.Subject{subject}}
	if _, err := client.RbacV1().RoleBindings(ns).Create(context.Background(), rb, metav1.CreateOptions{}); err != nil {
		t.Fatalf("binding %s in %s: %v", role, ns, err)
	}
}

// serviceAccountUser makes ServiceAccount sa in ns and returns its
// subject and a kubeconfig with its token.
func serviceAccountUser(t *testing.T, dir, ns, sa string) (rbacv1.Subject, string) {
	t.Helper()
	if _, err := client.CoreV1().ServiceAccounts(ns).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating ServiceAccount %s/%s: %v", ns, sa, err)
	}
	return rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: sa, Namespace: ns}, limitedKubeconfig(t, dir, ns, sa)
}

// certificateUser gets a client certificate for user (CN) signed by the
// cluster's CA (a CertificateSigningRequest, approved by the admin) and
// returns a kubeconfig with it.
func certificateUser(t *testing.T, dir, ns, user string) string {
	t.Helper()
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: user, Organization: []string{"e2e-developers"}}}, key)
	if err != nil {
		t.Fatal(err)
	}
	name := "e2e-" + user
	client.CertificatesV1().CertificateSigningRequests().Delete(ctx, name, metav1.DeleteOptions{})
	csr := &certsv1.CertificateSigningRequest{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: certsv1.CertificateSigningRequestSpec{
		Request:           pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csrDER}),
		SignerName:        certsv1.KubeAPIServerClientSignerName,
		ExpirationSeconds: ptrTo[int32](3600),
		Usages:            []certsv1.KeyUsage{certsv1.UsageClientAuth, certsv1.UsageDigitalSignature},
	}}
	if _, err := client.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating the CSR: %v", err)
	}
	defer client.CertificatesV1().CertificateSigningRequests().Delete(ctx, name, metav1.DeleteOptions{})
	got, err := client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got.Status.Conditions = append(got.Status.Conditions, certsv1.CertificateSigningRequestCondition{Type: certsv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "E2E", Message: "the e2e test's developer"})
	if _, err := client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, name, got, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("approving the CSR: %v", err)
	}
	var certPEM []byte
	for deadline := time.Now().Add(30 * time.Second); len(certPEM) == 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the CSR was not signed within 30s (is kube-controller-manager's signer configured?)")
		}
		c, err := client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err == nil {
			certPEM = c.Status.Certificate
		}
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	admin, err := clientcmd.LoadFromFile(kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cluster := admin.Clusters[admin.Contexts[admin.CurrentContext].Cluster].DeepCopy()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["e2e"] = cluster
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})}
	cfg.Contexts["e2e"] = &clientcmdapi.Context{Cluster: "e2e", AuthInfo: user, Namespace: ns}
	cfg.CurrentContext = "e2e"
	path := filepath.Join(dir, user+".kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// clientFor is a client with kubeconfig file kc's credentials.
func clientFor(t *testing.T, kc string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// cannot fails the test when the user of c may take any of the
// privileged actions tether needs without the operator.
func cannot(t *testing.T, c kubernetes.Interface, ns string) {
	t.Helper()
	for _, a := range []authorizationv1.ResourceAttributes{
		{Namespace: ns, Verb: "create", Resource: "pods"},
		{Namespace: ns, Verb: "create", Resource: "pods", Subresource: "exec"},
		{Namespace: ns, Verb: "create", Resource: "pods", Subresource: "portforward"},
		{Namespace: ns, Verb: "patch", Resource: "pods", Subresource: "ephemeralcontainers"},
		{Namespace: ns, Verb: "create", Group: "batch", Resource: "jobs"},
		{Namespace: deploy.DefaultNamespace, Verb: "get", Resource: "pods"},
	} {
		r, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &a}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("SelfSubjectAccessReview: %v", err)
		}
		if r.Status.Allowed {
			t.Errorf("the developer may %s %s/%s in %s: the test needs a user without privileged rights", a.Verb, a.Resource, a.Subresource, a.Namespace)
		}
	}
}

// sessionsJSON is `tether sessions -A -o json` as the admin.
func sessionsJSON(t *testing.T) []v1alpha1.Session {
	t.Helper()
	out, errOut, code := runTether(t, t.TempDir(), 30*time.Second, "sessions", "-A", "-o", "json")
	if code != 0 {
		t.Fatalf("tether sessions -A -o json: exit %d\n%s", code, errOut)
	}
	var list []v1alpha1.Session
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("tether sessions -o json: %v\n%s", err, out)
	}
	return list
}

// sessionOf finds user's session in list.
func sessionOf(list []v1alpha1.Session, user string) *v1alpha1.Session {
	for i := range list {
		if list[i].Spec.User == user {
			return &list[i]
		}
	}
	return nil
}

// eventReasons are the reasons of the Events on object name (of kind) in ns.
func eventReasons(t *testing.T, ns, kind, name string) map[string]int {
	t.Helper()
	evs, err := client.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.kind=" + kind + ",involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, e := range evs.Items {
		out[e.Reason] += int(max(e.Count, 1))
	}
	return out
}

// apiSnapshot lists every object of every listable resource, as
// "group/resource namespace/name", but for what changes by itself (events,
// leases, endpoints) and the namespaces skip says.
func apiSnapshot(t *testing.T, skip func(ns string) bool) []string {
	t.Helper()
	lists, err := client.Discovery().ServerPreferredResources()
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	churn := map[string]bool{"events": true, "leases": true, "endpoints": true, "endpointslices": true, "componentstatuses": true}
	var out []string
	for _, l := range lists {
		gv, err := schema.ParseGroupVersion(l.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range l.APIResources {
			if strings.Contains(r.Name, "/") || churn[r.Name] || !slices.Contains(r.Verbs, "list") {
				continue
			}
			items, err := dyn.Resource(gv.WithResource(r.Name)).List(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatalf("listing %s: %v", r.Name, err)
			}
			for _, it := range items.Items {
				if skip(it.GetNamespace()) || (r.Name == "namespaces" && skip(it.GetName())) {
					continue
				}
				name := it.GetName()
				if refs := it.GetOwnerReferences(); r.Name == "pods" && len(refs) > 0 {
					// A pod its ReplicaSet replaced (queue splitting rolls
					// the workload out and back) is the same pod here.
					name = "pod of " + refs[0].Kind + " " + refs[0].Name
				}
				out = append(out, fmt.Sprintf("%s/%s %s/%s", gv.Group, r.Name, it.GetNamespace(), name))
			}
		}
	}
	sort.Strings(out)
	return out
}

// diff is what a has that b lacks, and the reverse.
func diff(a, b []string) (onlyA, onlyB []string) {
	inB := map[string]bool{}
	for _, s := range b {
		inB[s] = true
	}
	inA := map[string]bool{}
	for _, s := range a {
		inA[s] = true
		if !inB[s] {
			onlyA = append(onlyA, s)
		}
	}
	for _, s := range b {
		if !inA[s] {
			onlyB = append(onlyB, s)
		}
	}
	return onlyA, onlyB
}
