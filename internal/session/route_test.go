package session

import (
	"net/netip"
	"testing"

	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/layer"
	"github.com/tether-dev/tether/internal/policy"
)

func TestFSRoute(t *testing.T) {
	cfg := config.FS{
		NotFound:  []string{`^/app/secret`},
		Local:     []string{`^/app/local`},
		ReadOnly:  []string{`^/data/ro`},
		ReadWrite: []string{`^/data/rw`},
	}
	dirs := []string{"/work/proj", "/home/dev", "/work/proj/bin"}
	tests := []struct {
		mode, path string
		want       layer.Route
	}{
		{"read", "/app/response.txt", layer.RemoteRead},
		{"read", "/app", layer.RemoteRead},
		{"read", "/", layer.Local},
		{"read", "/etc/passwd", layer.Local},
		{"read", "/usr/lib/python3.11/os.py", layer.Local},
		{"read", "/proc/self/status", layer.Local},
		{"read", "/lib64/ld-linux-x86-64.so.2", layer.Local},
		{"read", "/work", layer.Local},              // ancestor of cwd
		{"read", "/work/proj/main.go", layer.Local}, // under cwd
		{"read", "/workspace", layer.RemoteRead},    // not a path prefix
		{"read", "/srv/app/lib.so.1", layer.Local},
		{"read", "/srv/app/lib.so.1.2.3", layer.Local},
		{"read", "/srv/app/x.sox", layer.RemoteRead},
		{"read", "/srv/app/x.so.v1", layer.RemoteRead},
		{"read", "/app/main.py", layer.Local},
		{"read", "/app/node_modules/x/index.json", layer.Local},
		{"read", "/app/node_modules", layer.Local},
		{"read", "/app/repo/.git/HEAD", layer.RemoteRead},
		{"read", "/etcetera", layer.RemoteRead},
		{"read", "/var/lib/dpkg/status", layer.Local},
		{"read", "/var/lib/app/db", layer.RemoteRead},
		{"read", "/app/secret/key", layer.NotFound},
		{"read", "/app/local/x", layer.Local},
		{"read", "/data/rw/x", layer.RemoteWrite},
		{"write", "/app/new.txt", layer.RemoteWrite},
		{"write", "/data/ro/x", layer.RemoteRead},
		{"local", "/app/response.txt", layer.Local},
		{"local", "/data/ro/x", layer.RemoteRead},
		{"local", "/app/secret", layer.NotFound},
	}
	for _, tt := range tests {
		r, err := newFSRouter(cfg, tt.mode, dirs)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.route(tt.path); got != tt.want {
			t.Errorf("mode %s: route(%q) = %v, want %v", tt.mode, tt.path, got, tt.want)
		}
	}
	if _, err := newFSRouter(config.FS{Local: []string{"("}}, "read", nil); err == nil {
		t.Error("bad regex accepted")
	}
}

func TestNameFilter(t *testing.T) {
	f, err := newNameFilter("dns.filter.local", []string{"web.demo.svc.cluster.local", ".example.com", "*.corp.", "re:^db-[0-9]+\\.internal$"})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{
		"web.demo.svc.cluster.local.": true,
		"WEB.demo.svc.cluster.local":  true,
		"api.demo.svc.cluster.local":  false,
		"a.example.com.":              true,
		"example.com":                 false,
		"x.y.corp":                    true,
		"db-12.internal":              true,
		"db-x.internal":               false,
	} {
		if got := f.match(name); got != want {
			t.Errorf("match(%q) = %v, want %v", name, got, want)
		}
	}
	if _, err := newNameFilter("k", []string{"re:("}); err == nil {
		t.Error("bad regex accepted")
	}
}

func TestOutgoingPolicy(t *testing.T) {
	rules := func(entries ...string) []config.OutgoingRule {
		r, err := config.ParseOutgoingFilter(entries)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	web := netip.MustParseAddrPort("198.18.0.20:80")
	echo := netip.MustParseAddrPort("198.18.0.30:7")
	lo := netip.MustParseAddrPort("127.0.0.1:8080")
	tests := []struct {
		name    string
		p       outgoingPolicy
		network string
		dst     netip.AddrPort
		want    bool
	}{
		{"default remote", outgoingPolicy{tcp: true, udp: true, ignoreLocalhost: true}, "tcp", web, true},
		{"loopback local", outgoingPolicy{tcp: true, udp: true, ignoreLocalhost: true}, "tcp", lo, false},
		{"loopback remote when asked", outgoingPolicy{tcp: true, udp: true}, "tcp", lo, true},
		{"tcp off", outgoingPolicy{udp: true, ignoreLocalhost: true}, "tcp", web, false},
		{"local list", outgoingPolicy{tcp: true, udp: true, local: rules("198.18.0.30")}, "tcp", echo, false},
		{"local list other", outgoingPolicy{tcp: true, udp: true, local: rules("198.18.0.30")}, "tcp", web, true},
		{"remote list cidr+port", outgoingPolicy{tcp: true, udp: true, remote: rules("198.18.0.0/24:80")}, "tcp", web, true},
		{"remote list miss", outgoingPolicy{tcp: true, udp: true, remote: rules("198.18.0.0/24:80")}, "tcp", echo, false},
		{"remote by host", outgoingPolicy{tcp: true, udp: true, remote: rules("web.demo.svc.cluster.local"),
			hostsOf: func(a netip.Addr) []string {
				if a == web.Addr() {
					return []string{"web.demo.svc.cluster.local"}
				}
				return nil
			}}, "tcp", web, true},
		{"udp proto rule", outgoingPolicy{tcp: true, udp: true, local: rules("udp://198.18.0.30:7")}, "tcp", echo, true},
	}
	for _, tt := range tests {
		if got := tt.p.remoteFor(tt.network, tt.dst); got != tt.want {
			t.Errorf("%s: remoteFor(%s %v) = %v, want %v", tt.name, tt.network, tt.dst, got, tt.want)
		}
	}
}

// TestFSRoutePolicies: the policies' fs rules beat the user's config.
func TestFSRoutePolicies(t *testing.T) {
	user := config.FS{ReadWrite: []string{`^/app/config`}, Local: []string{`^/srv/mine`}}
	rules := []policy.Rules{{Name: "P", FSReadOnly: []string{`^/app/config`}, FSNotFound: []string{`^/srv/mine/secret`}, FSLocal: []string{`^/srv/cache`}}}
	fs, mode := withPolicies(user, "write", rules)
	r, err := newFSRouter(fs, mode, nil)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]layer.Route{
		"/app/config/app.yaml": layer.RemoteRead, // read_write asked, read-only by policy
		"/srv/mine/secret":     layer.NotFound,
		"/srv/mine/x":          layer.Local,
		"/srv/cache/a":         layer.Local,
		"/data/x":              layer.RemoteWrite,
	} {
		if got := r.route(p); got != want {
			t.Errorf("route(%s) = %v, want %v", p, got, want)
		}
	}
	fs, mode = withPolicies(user, "write", []policy.Rules{{Name: "W", Block: []string{policy.BlockFSWrite}}})
	r, _ = newFSRouter(fs, mode, nil)
	if got := r.route("/app/config/x"); got != layer.RemoteRead {
		t.Errorf("with block fs-write, the user's read_write path routes %v", got)
	}
	if got := r.route("/data/x"); got != layer.RemoteRead {
		t.Errorf("with block fs-write, mode write routes %v", got)
	}
}
