package operator

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// ClusterDNS is the cluster's DNS as its pods see it: what a targetless
// agent in the operator's namespace gets so that names resolve as in the
// pods of the namespace it serves.
type ClusterDNS struct {
	Nameservers []string
	// Domain is the cluster domain (cluster.local).
	Domain string
	// Options are resolv.conf's (ndots:5...).
	Options []corev1.PodDNSConfigOption
}

// ReadClusterDNS reads the DNS of the operator's own pod (namespace ns)
// from resolv.conf at path: its search list starts NS.svc.DOMAIN.
func ReadClusterDNS(path, ns string) (ClusterDNS, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return ClusterDNS{}, fmt.Errorf("reading the cluster's DNS: %w", err)
	}
	d, err := ParseClusterDNS(b, ns)
	if err != nil {
		return ClusterDNS{}, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

// ParseClusterDNS parses resolv.conf b of a pod in namespace ns.
func ParseClusterDNS(b []byte, ns string) (ClusterDNS, error) {
	var d ClusterDNS
	var search []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			d.Nameservers = append(d.Nameservers, f[1])
		case "search":
			search = f[1:]
		case "options":
			for _, o := range f[1:] {
				name, value, ok := strings.Cut(o, ":")
				opt := corev1.PodDNSConfigOption{Name: name}
				if ok {
					opt.Value = &value
				}
				d.Options = append(d.Options, opt)
			}
		}
	}
	prefix := ns + ".svc."
	for _, s := range search {
		if dom, ok := strings.CutPrefix(strings.TrimSuffix(s, "."), prefix); ok && dom != "" {
			d.Domain = dom
			break
		}
	}
	if len(d.Nameservers) == 0 {
		return d, fmt.Errorf("no nameserver")
	}
	if d.Domain == "" {
		return d, fmt.Errorf("no search domain %sDOMAIN (is the operator running in a pod of namespace %s?)", prefix, ns)
	}
	return d, nil
}

// For is the DNS of a pod in namespace ns.
func (d ClusterDNS) For(ns string) *corev1.PodDNSConfig {
	return &corev1.PodDNSConfig{
		Nameservers: d.Nameservers,
		Searches:    []string{ns + ".svc." + d.Domain, "svc." + d.Domain, d.Domain},
		Options:     d.Options,
	}
}
