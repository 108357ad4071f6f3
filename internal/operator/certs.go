package operator

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"math/big"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// Secret keys of the operator's serving certificate.
const (
	SecretCA   = "ca.crt"
	SecretCert = "tls.crt"
	SecretKey  = "tls.key"
)

var apiServicesGVR = schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}

// ServingCert returns the operator's serving certificate and key, kept in
// Secret secret of ns: made the first time (its own CA, and a
// certificate for Service service's DNS names), shared by every replica
// after. It then makes APIService apiService trust that CA, so that
// the same manifests work whoever installs them (tether operator install,
// kubectl apply, Helm) with no certificate in them.
func ServingCert(ctx context.Context, client kubernetes.Interface, dyn dynamic.Interface, ns, secret, service, apiService string) (certPEM, keyPEM []byte, err error) {
	s, err := client.CoreV1().Secrets(ns).Get(ctx, secret, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		fresh, gerr := newServingSecret(ns, secret, service)
		if gerr != nil {
			return nil, nil, gerr
		}
		s, err = client.CoreV1().Secrets(ns).Create(ctx, fresh, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) { // another replica made it first
			s, err = client.CoreV1().Secrets(ns).Get(ctx, secret, metav1.GetOptions{})
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("the serving certificate (secret %s/%s): %w", ns, secret, err)
	}
	ca, cert, key := s.Data[SecretCA], s.Data[SecretCert], s.Data[SecretKey]
	if len(ca) == 0 || len(cert) == 0 || len(key) == 0 {
		return nil, nil, fmt.Errorf("secret %s/%s lacks %s, %s or %s: delete it and restart the operator (it makes a new one)", ns, secret, SecretCA, SecretCert, SecretKey)
	}
	as, err := dyn.Resource(apiServicesGVR).Get(ctx, apiService, metav1.GetOptions{})
	if err != nil {
		return nil, nil, fmt.Errorf("APIService %s: %w (is the operator installed? tether operator install)", apiService, err)
	}
	have, _, _ := unstructuredString(as.Object, "spec", "caBundle")
	if want := base64.StdEncoding.EncodeToString(ca); have != want {
		patch := fmt.Appendf(nil, `{"spec":{"caBundle":%q}}`, want)
		if _, err := dyn.Resource(apiServicesGVR).Patch(ctx, apiService, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			return nil, nil, fmt.Errorf("trusting the operator's CA in APIService %s: %w", apiService, err)
		}
	}
	return cert, key, nil
}

func unstructuredString(obj map[string]any, path ...string) (string, bool, error) {
	var cur any = obj
	for _, p := range path {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		cur = m[p]
	}
	s, ok := cur.(string)
	return s, ok, nil
}

// newServingSecret makes a CA and a serving certificate for service.ns.
func newServingSecret(ns, name, service string) (*corev1.Secret, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "tether-operator-ca"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	leaf := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: service + "." + ns + ".svc"},
		DNSNames:  []string{service, service + "." + ns, service + "." + ns + ".svc", service + "." + ns + ".svc.cluster.local"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(10, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	enc := func(typ string, b []byte) []byte {
		var buf bytes.Buffer
		pem.Encode(&buf, &pem.Block{Type: typ, Bytes: b})
		return buf.Bytes()
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app.kubernetes.io/name": "tether-operator"}},
		Type:       corev1.SecretTypeTLS,
		Data: map[string][]byte{
			SecretCA: enc("CERTIFICATE", caDER), SecretCert: enc("CERTIFICATE", der), SecretKey: enc("EC PRIVATE KEY", keyDER),
		},
	}, nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}
