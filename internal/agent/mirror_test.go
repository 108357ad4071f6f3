package agent

import (
	"slices"
	"strings"
	"testing"
)

// starts feeds stream to a mirrorFrame in pieces of at most step bytes
// (0: at once) and returns the offsets where requests start.
func starts(stream string, step int) []int {
	var f mirrorFrame
	var out []int
	off := 0
	for off < len(stream) {
		end := len(stream)
		if step > 0 {
			end = min(off+step, len(stream))
		}
		b := []byte(stream[off:end])
		for len(b) > 0 {
			n, start := f.next(b)
			if start {
				out = append(out, off)
			}
			off += n
			b = b[n:]
		}
	}
	return out
}

func TestMirrorFrame(t *testing.T) {
	get := "GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
	post := "POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
	chunked := "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
	upgrade := "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
	for _, tc := range []struct {
		name   string
		stream string
		want   []int
	}{
		{"pipelined", get + post + chunked + get, []int{0, len(get), len(get + post), len(get + post + chunked)}},
		{"an upgrade's bytes are its request's", get + upgrade + "GET / HTTP/1.1\r\n\r\n", []int{0, len(get)}},
		{"not HTTP: one copy", "\x16\x03\x01 hello GET / HTTP/1.1\r\n\r\n", []int{0}},
		{"HTTP/2: one copy", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + get, []int{0}},
		{"a bad head ends the boundaries", get + "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n" + get, []int{0, len(get)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, step := range []int{0, 1, 2, 3, 7, 64} {
				if got := starts(tc.stream, step); !slices.Equal(got, tc.want) {
					t.Errorf("pieces of %d: starts %v, want %v", step, got, tc.want)
				}
			}
		})
	}
}

// FuzzMirrorFrame: where requests start does not depend on how the
// connection's bytes were read.
func FuzzMirrorFrame(f *testing.F) {
	f.Add("GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nContent-Length: 2\r\n\r\nhi", uint8(3))
	f.Add("POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n", uint8(1))
	f.Add("PUT / HTTP/1.0\r\n\r\n", uint8(2))
	f.Fuzz(func(t *testing.T, stream string, step uint8) {
		if !strings.Contains(stream, "HTTP/1.") && len(stream) > 1<<12 {
			return
		}
		whole := starts(stream, 0)
		if got := starts(stream, int(step)); !slices.Equal(got, whole) {
			t.Fatalf("pieces of %d: starts %v; at once %v", step, got, whole)
		}
	})
}
