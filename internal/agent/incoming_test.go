package agent

import (
	"bufio"
	"strings"
	"testing"
	"time"
)

func TestClassifyHTTP(t *testing.T) {
	tests := []struct {
		in   string
		want httpVerdict
	}{
		{"GET / HTTP/1.1\r\n", isHTTP},
		{"POST ", isHTTP},
		{"GE", undecided},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", isHTTP},
		{"PRI * HTTP", undecided},
		{"hello-0\n", notHTTP},
		{"\x16\x03\x01", notHTTP}, // TLS
		{"GETX", notHTTP},
		{"", undecided},
	}
	for _, tt := range tests {
		if got := classifyHTTP([]byte(tt.in)); got != tt.want {
			t.Errorf("classifyHTTP(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// TestDetectHTTPDecidesEarly: a short non-HTTP greeting is recognised at
// once, without waiting for more bytes.
func TestDetectHTTPDecidesEarly(t *testing.T) {
	start := time.Now()
	if v := detectHTTP(bufio.NewReader(strings.NewReader("hello-0\n"))); v != notHTTP {
		t.Fatalf("verdict %v", v)
	}
	if v := detectHTTP(bufio.NewReader(strings.NewReader("GET /x HTTP/1.1\r\n"))); v != isHTTP {
		t.Fatalf("verdict %v", v)
	}
	if time.Since(start) > time.Second {
		t.Fatal("detection waited")
	}
}
