package layer

import (
	"strings"
	"testing"
)

func TestCheckKernel(t *testing.T) {
	tests := []struct {
		rel     string
		wantErr string
	}{
		{"6.18.44-fc-v657", ""},
		{"5.19.0", ""},
		{"6.1.0-18-amd64", ""},
		{"5.15.0-1051-azure", "Linux 5.15 is too old"},
		{"4.19.0", "Linux 4.19 is too old"},
		{"garbage", "unrecognised kernel release"},
		{"6.x", "unrecognised kernel release"},
	}
	for _, tt := range tests {
		err := checkKernel(tt.rel)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("checkKernel(%q) = %v", tt.rel, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("checkKernel(%q) = %v, want %q", tt.rel, err, tt.wantErr)
		}
	}
}

func TestCheckActions(t *testing.T) {
	if err := checkActions("kill_process kill_thread trap errno user_notif trace log allow\n"); err != nil {
		t.Fatal(err)
	}
	if err := checkActions("kill_process errno allow"); err == nil || !strings.Contains(err.Error(), "user notification is not available") {
		t.Fatalf("got %v", err)
	}
}
