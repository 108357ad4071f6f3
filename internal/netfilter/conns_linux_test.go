package netfilter

import (
	"bufio"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/netns"

	"github.com/tether-dev/tether/internal/netns/netnstest"
)

func TestQuiet(t *testing.T) {
	const s = time.Second
	for _, tc := range []struct {
		name string
		c    Conn
		want QuietState
	}{
		{"answered, quiet", Conn{HasInfo: true, SinceSent: 2 * s, SinceRecv: 3 * s, SinceAckRecv: 2 * s}, Answered},
		{"same tick, acknowledged after", Conn{HasInfo: true, SinceSent: s, SinceRecv: s, SinceAckRecv: s - 40*time.Millisecond}, Answered},
		{"same tick, nothing after", Conn{HasInfo: true, SinceSent: s, SinceRecv: s, SinceAckRecv: s}, Unsure},
		{"request being served", Conn{HasInfo: true, SinceSent: 3 * s, SinceRecv: s, SinceAckRecv: s}, Busy},
		{"unread request", Conn{HasInfo: true, RQueue: 10, SinceSent: 2 * s, SinceRecv: 3 * s}, Busy},
		{"answer not acknowledged", Conn{HasInfo: true, WQueue: 10, SinceSent: 2 * s, SinceRecv: 3 * s}, Busy},
		{"no tcp_info", Conn{SinceSent: 2 * s, SinceRecv: 3 * s}, Busy},
	} {
		quiet, st := tc.c.Quiet()
		if st != tc.want || (st != Busy && quiet != tc.c.SinceSent) {
			t.Errorf("%s: Quiet = %v, %v; want %v", tc.name, quiet, st, tc.want)
		}
	}
}

// TestDiagConns: a real connection in a fresh namespace is listed with
// its mark, and is between exchanges only once the server has answered.
func TestDiagConns(t *testing.T) {
	ns := netnstest.New(t)
	var ln net.Listener
	if err := netns.Do(ns, unix.CLONE_NEWNET, func() error {
		var err error
		ln, err = net.Listen("tcp4", "127.0.0.1:8098")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	answer := make(chan struct{})
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		r := bufio.NewReader(c)
		for {
			if _, err := r.ReadString('\n'); err != nil {
				return
			}
			<-answer
			c.Write([]byte("answer\n"))
		}
	}()
	var client net.Conn
	if err := netns.Do(ns, unix.CLONE_NEWNET, func() error {
		var err error
		client, err = (&net.Dialer{Control: MarkControl}).Dial("tcp4", "127.0.0.1:8098")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	d, err := OpenDiag(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	server := func() Conn {
		t.Helper()
		conns, err := d.Conns()
		if err != nil {
			t.Fatal(err)
		}
		var srv, cli *Conn
		for i, c := range conns {
			switch {
			case c.Local.Port() == 8098:
				srv = &conns[i]
			case c.Remote.Port() == 8098:
				cli = &conns[i]
			}
		}
		if srv == nil || cli == nil {
			t.Fatalf("connections %+v: want both ends of the one to port 8098", conns)
		}
		if cli.Mark != AgentMark || srv.Mark != 0 {
			t.Errorf("marks: client %#x, server %#x; want %#x and 0", cli.Mark, srv.Mark, AgentMark)
		}
		if srv.Remote != cli.Local {
			t.Errorf("server's peer %v, client's address %v", srv.Remote, cli.Local)
		}
		return *srv
	}
	client.Write([]byte("request\n"))
	time.Sleep(200 * time.Millisecond)
	if q, st := server().Quiet(); st == Answered {
		t.Errorf("a request being served is answered (quiet %v)", q)
	}
	close(answer)
	if _, err := bufio.NewReader(client).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	q, st := server().Quiet()
	if st == Busy || q < 250*time.Millisecond {
		t.Errorf("an answered connection quiet for 300ms: Quiet = %v, %v; want ≥ 250ms, not busy", q, st)
	}
	if err := d.Destroy(server()); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil || !isReset(err) {
		t.Errorf("client after Destroy: %v, want a reset", err)
	}
}

func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }
