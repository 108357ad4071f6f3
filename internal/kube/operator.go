package kube

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tether-dev/tether/api/v1alpha1"
)

// OperatorServes reports whether tether-operator serves tether's API in
// the cluster (its APIService is registered). installed with a non-nil
// error means it is registered but does not answer now.
func OperatorServes(ctx context.Context, client kubernetes.Interface) (installed bool, err error) {
	_, err = client.Discovery().ServerResourcesForGroupVersion(v1alpha1.SchemeGroupVersion.String())
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	}
	return true, fmt.Errorf("tether-operator is installed (the API server knows %s) but does not answer: %w; see tether operator status, or run with --no-operator (operator: false) if you may start agents yourself", v1alpha1.SchemeGroupVersion, err)
}

// ConnectError is a targets/connect request the API server or the
// operator refused; Final when trying again cannot help (RBAC, a bad
// request), not when the operator is starting an agent or restarting.
type ConnectError struct {
	Code  int
	Msg   string
	Final bool
}

func (e *ConnectError) Error() string { return e.Msg }

// DialOperator opens a session's stream through the API server to
// tether-operator: targets/connect of target (a targets.tether.dev name)
// in ns, for one pod, upgraded to tether's protocol. The API server
// authenticates the user with cfg's credentials, whatever they are
// (tokens, client certificates, exec plugins), and authorizes the request.
func DialOperator(ctx context.Context, cfg *rest.Config, ns, target string, opts v1alpha1.TargetConnectOptions) (net.Conn, error) {
	base, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, fmt.Errorf("the API server address %q: %w", cfg.Host, err)
	}
	if base.Scheme == "" {
		base, err = url.Parse("https://" + cfg.Host)
		if err != nil {
			return nil, fmt.Errorf("the API server address %q: %w", cfg.Host, err)
		}
	}
	u := base.JoinPath("apis", v1alpha1.GroupName, v1alpha1.SchemeGroupVersion.Version, "namespaces", ns, v1alpha1.ResourceTargets, target, v1alpha1.SubresourceConnect)
	u.RawQuery = opts.Query().Encode()
	var tlsConfig *tls.Config
	if u.Scheme == "https" {
		if tlsConfig, err = rest.TLSConfigFor(cfg); err != nil {
			return nil, fmt.Errorf("TLS settings of the kubeconfig: %w", err)
		}
	}
	rt, err := rest.HTTPWrappersForConfig(cfg, &upgrader{tls: tlsConfig, dial: cfg.Dial})
	if err != nil {
		return nil, fmt.Errorf("credentials of the kubeconfig: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", v1alpha1.UpgradeProtocol)
	resp, err := rt.RoundTrip(req)
	if err != nil {
		return nil, fmt.Errorf("connecting to tether-operator through the API server: %w", err)
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if c, ok := resp.Body.(net.Conn); ok {
			return c, nil
		}
		resp.Body.Close()
		return nil, errors.New("the API server switched protocols but gave no connection")
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return nil, connectError(resp.StatusCode, body, ns, target)
}

// connectError explains a refused targets/connect.
func connectError(code int, body []byte, ns, target string) error {
	msg := strings.TrimSpace(string(body))
	var st metav1.Status
	if json.Unmarshal(body, &st) == nil && st.Message != "" {
		msg = st.Message
	}
	e := &ConnectError{Code: code, Msg: msg}
	switch code {
	case http.StatusForbidden:
		e.Final = true
		if !strings.Contains(msg, "tether-user") {
			// The API server's own refusal: the connect subresource.
			e.Msg = fmt.Sprintf("%s: opening a session needs the RBAC verb create on targets.tether.dev/connect in %s; ask your platform team to bind the ClusterRole tether-user to you there", msg, ns)
		}
	case http.StatusUnauthorized:
		e.Final = true
		e.Msg = fmt.Sprintf("the API server did not accept your credentials (%s): check your kubeconfig (kubectl auth whoami)", msg)
	case http.StatusBadRequest, http.StatusNotFound:
		e.Final = true
		if code == http.StatusNotFound && msg == "" {
			e.Msg = fmt.Sprintf("targets/%s in %s: not found", target, ns)
		}
	}
	if e.Msg == "" {
		e.Msg = fmt.Sprintf("tether-operator answered %d %s", code, http.StatusText(code))
	}
	return e
}

// upgrader is a RoundTripper for one upgrade request: it dials its own
// HTTP/1.1 connection (an upgrade cannot ride HTTP/2) and, on 101, hands
// that connection over as the response body.
type upgrader struct {
	tls  *tls.Config
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (u *upgrader) RoundTrip(req *http.Request) (*http.Response, error) {
	host := req.URL.Host
	if req.URL.Port() == "" {
		if req.URL.Scheme == "https" {
			host = net.JoinHostPort(req.URL.Hostname(), "443")
		} else {
			host = net.JoinHostPort(req.URL.Hostname(), "80")
		}
	}
	dial := u.dial
	if dial == nil {
		d := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
		dial = d.DialContext
	}
	raw, err := dial(req.Context(), "tcp", host)
	if err != nil {
		return nil, err
	}
	conn := raw
	if u.tls != nil {
		c := u.tls.Clone()
		if c.ServerName == "" {
			c.ServerName = req.URL.Hostname()
		}
		c.NextProtos = []string{"http/1.1"}
		tc := tls.Client(raw, c)
		if err := tc.HandshakeContext(req.Context()); err != nil {
			raw.Close()
			return nil, err
		}
		conn = tc
	}
	stop := context.AfterFunc(req.Context(), func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := req.Write(conn); err != nil {
		conn.Close()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		conn.Close()
		return nil, err
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		resp.Body = &upgraded{Conn: conn, r: br}
		return resp, nil
	}
	resp.Body = &closeBoth{ReadCloser: resp.Body, c: conn}
	return resp, nil
}

// upgraded is the connection after a 101: bytes the response's reader
// buffered come first.
type upgraded struct {
	net.Conn
	r *bufio.Reader
}

func (u *upgraded) Read(p []byte) (int, error) {
	if u.r.Buffered() > 0 {
		return u.r.Read(p)
	}
	return u.Conn.Read(p)
}

func (u *upgraded) CloseWrite() error {
	if cw, ok := u.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

type closeBoth struct {
	io.ReadCloser
	c net.Conn
}

func (b *closeBoth) Close() error {
	b.ReadCloser.Close()
	return b.c.Close()
}
