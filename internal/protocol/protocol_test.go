package protocol

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"strings"
	"syscall"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	in := Request{Op: OpDial, Network: "tcp", Addr: "10.0.0.1:80"}
	if err := WriteFrame(&buf, in); err != nil {
		t.Fatal(err)
	}
	var out Request
	if err := ReadFrame(&buf, &out); err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("got %+v, want %+v", out, in)
	}
}

func TestReadFrameErrors(t *testing.T) {
	big := make([]byte, 4)
	binary.BigEndian.PutUint32(big, MaxFrame+1)
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "EOF"},
		{"short header", []byte{0, 0}, "unexpected EOF"},
		{"too large", big, "too large"},
		{"short body", []byte{0, 0, 0, 10, '{'}, "unexpected EOF"},
		{"bad json", []byte{0, 0, 0, 1, '{'}, "decoding frame"},
		{"wrong type", []byte{0, 0, 0, 8, '{', '"', 'o', 'p', '"', ':', '1', '}'}, "decoding frame"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r Request
			err := ReadFrame(bytes.NewReader(tt.in), &r)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestDatagramRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	for _, p := range [][]byte{{}, []byte("hi"), bytes.Repeat([]byte{7}, MaxDatagram)} {
		if err := WriteDatagram(&buf, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := WriteDatagram(&buf, make([]byte, MaxDatagram+1)); err == nil {
		t.Fatal("oversized datagram accepted")
	}
	out := make([]byte, MaxDatagram)
	for _, want := range []int{0, 2, MaxDatagram} {
		n, err := ReadDatagram(&buf, out)
		if err != nil || n != want {
			t.Fatalf("ReadDatagram = %d, %v; want %d", n, err, want)
		}
	}
}

func TestHandshake(t *testing.T) {
	tests := []struct {
		name    string
		hello   func(*Hello)
		refuse  string
		wantErr string
	}{
		{"ok", nil, "", ""},
		{"refused", nil, "token mismatch", "token mismatch"},
		{"too new", func(h *Hello) { h.MinVersion = Version + 1 }, "", "the agent comes from an older release; use the agent of tether's release"},
		{"too old", func(h *Hello) { h.Version = MinVersion - 1 }, "", "tether comes from an older release; upgrade tether"},
		{"bad magic", func(h *Hello) { h.Magic = "http" }, "", "not a tether client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := net.Pipe()
			defer c.Close()
			defer s.Close()
			done := make(chan error, 1)
			go func() {
				_, _, err := ServerHandshake(s, func(h Hello) Welcome {
					return Welcome{SessionID: "s1", Capabilities: Intersect(AllCapabilities, h.Capabilities), Error: tt.refuse}
				})
				done <- err
			}()
			var w Welcome
			var err error
			if tt.hello == nil {
				w, err = ClientHandshake(c, Hello{})
			} else {
				// Hand-rolled hello to send fields ClientHandshake would fix up.
				h := Hello{Magic: Magic, Version: Version, MinVersion: MinVersion}
				tt.hello(&h)
				if err = WriteFrame(c, h); err == nil {
					if err = ReadFrame(c, &w); err == nil && w.Error != "" {
						err = errors.New(w.Error)
					}
				}
			}
			serr := <-done
			if tt.wantErr == "" {
				if err != nil || serr != nil {
					t.Fatalf("client err %v, server err %v", err, serr)
				}
				if w.SessionID != "s1" || len(w.Capabilities) != len(AllCapabilities) {
					t.Fatalf("welcome = %+v", w)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("client err = %v, want %q", err, tt.wantErr)
			}
			if serr == nil {
				t.Fatal("server accepted a refused client")
			}
		})
	}
}

// TestClientHandshakeVersion: the client names an agent of another
// release and what to do, whether the agent answers or refuses.
func TestClientHandshakeVersion(t *testing.T) {
	tests := []struct {
		name    string
		welcome Welcome
		wantErr string
	}{
		{"older agent", Welcome{Version: MinVersion - 1}, fmt.Sprintf("the agent speaks protocol %d, but this tether needs %d or newer: the agent comes from an older release", MinVersion-1, MinVersion)},
		{"newer agent refuses", Welcome{Version: Version + 1, Error: "go away"}, fmt.Sprintf("the agent refused the session: go away (the agent speaks protocol %d, this tether %d: use tether and tether-agent from the same release)", Version+1, Version)},
		{"refusal, same release", Welcome{Version: Version, Error: "go away"}, "the agent refused the session: go away"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := net.Pipe()
			defer c.Close()
			defer s.Close()
			go func() {
				var h Hello
				if ReadFrame(s, &h) == nil {
					WriteFrame(s, tt.welcome)
				}
			}()
			_, err := ClientHandshake(c, Hello{})
			// Only an agent of another release gets the protocol numbers.
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) || (tt.welcome.Version == Version) != !strings.Contains(err.Error(), "protocol") {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestErrnoOf(t *testing.T) {
	tests := []struct {
		err  error
		want syscall.Errno
	}{
		{syscall.ENOTDIR, syscall.ENOTDIR},
		{&fs.PathError{Op: "open", Path: "/x", Err: syscall.ELOOP}, syscall.ELOOP},
		{fs.ErrNotExist, syscall.ENOENT},
		{fs.ErrPermission, syscall.EACCES},
		{io.EOF, syscall.EIO},
	}
	for _, tt := range tests {
		if got := ErrnoOf(tt.err); got != tt.want {
			t.Errorf("ErrnoOf(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	r := ErrorResponse(&fs.PathError{Op: "open", Path: "/x", Err: syscall.ENOENT})
	if err := r.Err(); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Response.Err() = %v, want ErrNotExist", err)
	}
}

func TestMuxStreams(t *testing.T) {
	c, s := net.Pipe()
	cm, err := NewClientMux(c)
	if err != nil {
		t.Fatal(err)
	}
	sm, err := NewServerMux(s)
	if err != nil {
		t.Fatal(err)
	}
	defer cm.Close()
	defer sm.Close()
	go func() {
		st, err := sm.Accept()
		if err != nil {
			return
		}
		var r Request
		ReadFrame(st, &r)
		WriteFrame(st, Response{Hostname: r.Path})
		io.Copy(st, st) // echo until the client half-closes
		st.CloseWrite()
	}()
	st, err := cm.Open()
	if err != nil {
		t.Fatal(err)
	}
	WriteFrame(st, Request{Op: OpHostname, Path: "pod-1"})
	var resp Response
	if err := ReadFrame(st, &resp); err != nil || resp.Hostname != "pod-1" {
		t.Fatalf("resp %+v err %v", resp, err)
	}
	st.Write([]byte("ping"))
	st.CloseWrite()
	got, err := io.ReadAll(st)
	if err != nil || string(got) != "ping" {
		t.Fatalf("echo = %q, %v", got, err)
	}
	cm.Close()
	select {
	case <-cm.Done():
	default:
		t.Fatal("Done not closed after Close")
	}
}

func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	WriteFrame(&buf, Hello{Magic: Magic, Version: 1, Capabilities: AllCapabilities})
	f.Add(buf.Bytes())
	buf.Reset()
	WriteFrame(&buf, Response{Stat: &Stat{Mode: 0o100644, Size: 5}, Entries: []DirEntry{{Name: "a"}}})
	f.Add(buf.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	buf.Reset()
	WriteFrame(&buf, Hello{Magic: Magic, Run: "r", Grant: &Grant{User: "u", Refuse: map[string]string{ActionSteal: "no"}}})
	f.Add(buf.Bytes())
	buf.Reset()
	WriteFrame(&buf, AdminResponse{Sessions: []SessionInfo{{ID: "a", Subscriptions: []SubscriptionInfo{{Port: 80}}, Refused: []Refusal{{Action: ActionSteal}}}}})
	f.Add(buf.Bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		var h Hello
		if ReadFrame(bytes.NewReader(b), &h) == nil {
			h.Grant.Refusal(ActionSteal)
			h.Grant.Who()
		}
		var ar AdminRequest
		ReadFrame(bytes.NewReader(b), &ar)
		var aresp AdminResponse
		ReadFrame(bytes.NewReader(b), &aresp)
		var w Welcome
		ReadFrame(bytes.NewReader(b), &w)
		var r Request
		ReadFrame(bytes.NewReader(b), &r)
		var resp Response
		if ReadFrame(bytes.NewReader(b), &resp) == nil {
			resp.Err()
		}
		out := make([]byte, MaxDatagram)
		ReadDatagram(bytes.NewReader(b), out)
	})
}
