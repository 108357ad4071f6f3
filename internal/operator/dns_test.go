package operator

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

func TestParseClusterDNS(t *testing.T) {
	five := "5"
	tests := []struct {
		name, conf string
		want       ClusterDNS
		err        bool
	}{
		{
			name: "pod",
			conf: "search tether-system.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n",
			want: ClusterDNS{Nameservers: []string{"10.96.0.10"}, Domain: "cluster.local", Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &five}}},
		},
		{
			name: "other domain, comments, trailing dots, two servers",
			conf: "# made by the kubelet\nnameserver 10.0.0.10\nnameserver fd00::10\nsearch tether-system.svc.corp.example. svc.corp.example.\noptions ndots:5 edns0\n",
			want: ClusterDNS{Nameservers: []string{"10.0.0.10", "fd00::10"}, Domain: "corp.example", Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: &five}, {Name: "edns0"}}},
		},
		{name: "another namespace's search list", conf: "search default.svc.cluster.local\nnameserver 10.96.0.10\n", err: true},
		{name: "a host's resolv.conf", conf: "nameserver 192.168.1.1\nsearch lan\n", err: true},
		{name: "no nameserver", conf: "search tether-system.svc.cluster.local\n", err: true},
		{name: "empty", conf: "", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseClusterDNS([]byte(tt.conf), "tether-system")
			if tt.err {
				if err == nil {
					t.Fatalf("no error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestClusterDNSFor(t *testing.T) {
	d := ClusterDNS{Nameservers: []string{"10.96.0.10"}, Domain: "cluster.local"}
	got := d.For("tether-demo")
	want := []string{"tether-demo.svc.cluster.local", "svc.cluster.local", "cluster.local"}
	if !reflect.DeepEqual(got.Searches, want) || !reflect.DeepEqual(got.Nameservers, d.Nameservers) {
		t.Fatalf("got %+v, want searches %v", got, want)
	}
}

func FuzzParseClusterDNS(f *testing.F) {
	f.Add([]byte("search ns.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n"), "ns")
	f.Add([]byte("nameserver\nsearch\noptions :\n"), "")
	f.Fuzz(func(t *testing.T, b []byte, ns string) {
		d, err := ParseClusterDNS(b, ns)
		if err == nil && (len(d.Nameservers) == 0 || d.Domain == "") {
			t.Fatalf("no error but %+v", d)
		}
	})
}
