package protocol

import (
	"net"
	"testing"
)

// writeRecorder is a net.Conn that records each Write.
type writeRecorder struct {
	net.Conn
	writes [][]byte
}

func (w *writeRecorder) Write(b []byte) (int, error) {
	w.writes = append(w.writes, append([]byte(nil), b...))
	return len(b), nil
}

func TestCoalescingConn(t *testing.T) {
	rec := &writeRecorder{}
	c := &coalescingConn{Conn: rec}
	data := []byte{0, yamuxTypeData, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5}
	winUpdate := []byte{0, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 5}
	emptyData := []byte{0, yamuxTypeData, 0, 4, 0, 0, 0, 1, 0, 0, 0, 0}
	for _, step := range []struct {
		b    []byte
		want int // the write's reported count
	}{{data, 12}, {[]byte("hello"), 5}, {winUpdate, 12}, {emptyData, 12}, {data, 12}, {[]byte("world"), 5}} {
		if n, err := c.Write(step.b); n != step.want || err != nil {
			t.Fatalf("Write(%q) = %d, %v; want %d", step.b, n, err, step.want)
		}
	}
	want := []string{string(data) + "hello", string(winUpdate), string(emptyData), string(data) + "world"}
	if len(rec.writes) != len(want) {
		t.Fatalf("%d writes reached the conn, want %d: %q", len(rec.writes), len(want), rec.writes)
	}
	for i, w := range want {
		if string(rec.writes[i]) != w {
			t.Errorf("write %d = %q, want %q", i, rec.writes[i], w)
		}
	}
}
