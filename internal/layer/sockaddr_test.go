package layer

import (
	"net/netip"
	"testing"
)

func TestSockaddrRoundTrip(t *testing.T) {
	tests := []struct {
		family int
		ap     string
	}{
		{afInet, "10.96.0.1:80"},
		{afInet6, "[2001:db8::1]:443"},
		{afInet6, "198.18.0.20:8080"}, // v4-mapped in an AF_INET6 socket
	}
	for _, tt := range tests {
		ap := netip.MustParseAddrPort(tt.ap)
		got, fam, ok := parseSockaddr(encodeSockaddr(tt.family, ap))
		if !ok || fam != tt.family || got != ap {
			t.Errorf("round trip %v/%d = %v/%d/%v", ap, tt.family, got, fam, ok)
		}
	}
	if _, fam, ok := parseSockaddr([]byte{afUnix, 0, '/', 't'}); ok || fam != afUnix {
		t.Errorf("AF_UNIX parsed as inet: fam=%d ok=%v", fam, ok)
	}
	if _, _, ok := parseSockaddr([]byte{afInet, 0, 0}); ok {
		t.Error("short sockaddr_in accepted")
	}
}

func FuzzParseSockaddr(f *testing.F) {
	f.Add(encodeSockaddr(afInet, netip.MustParseAddrPort("10.0.0.1:53")))
	f.Add(encodeSockaddr(afInet6, netip.MustParseAddrPort("[::1]:80")))
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		ap, fam, ok := parseSockaddr(b)
		if !ok {
			return
		}
		back, fam2, ok2 := parseSockaddr(encodeSockaddr(fam, ap))
		if !ok2 || fam2 != fam || back != ap {
			t.Fatalf("re-encode of %v/%d gave %v/%d/%v", ap, fam, back, fam2, ok2)
		}
	})
}
