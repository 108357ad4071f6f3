package netfilter

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/netns"
	"github.com/tether-dev/tether/internal/netns/netnstest"
)

func listTables(t *testing.T, ns string) string {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+ns, "nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list ruleset: %v\n%s", err, out)
	}
	return string(out)
}

func TestNftablesRedirect(t *testing.T) {
	ns := netnstest.New(t)
	var ln *net.TCPListener
	if err := netns.Do(ns, unix.CLONE_NEWNET, func() error {
		l, err := net.ListenTCP("tcp4", &net.TCPAddr{})
		ln = l
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	agentPort := uint16(ln.Addr().(*net.TCPAddr).Port)
	table := TableName(os.Getpid(), 1)
	r, err := NewNftables(ns, table)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Redirect(8080, agentPort); err != nil {
		t.Fatal(err)
	}
	if rs := listTables(t, ns); !strings.Contains(rs, table) || !strings.Contains(rs, "tcp dport 8080 tcp flags syn / syn,ack redirect to :"+fmt.Sprint(agentPort)) {
		t.Fatalf("ruleset lacks the redirect:\n%s", rs)
	}
	// A connection from inside the namespace to 127.0.0.1:8080 lands on the
	// agent's listener, which learns the original destination.
	go func() {
		netns.Do(ns, unix.CLONE_NEWNET, func() error {
			c, err := net.DialTimeout("tcp4", "127.0.0.1:8080", 2*time.Second)
			if err == nil {
				c.Write([]byte("x"))
				time.Sleep(100 * time.Millisecond)
				c.Close()
			}
			return err
		})
	}()
	ln.SetDeadline(time.Now().Add(5 * time.Second))
	c, err := ln.AcceptTCP()
	if err != nil {
		t.Fatalf("redirected connection never arrived: %v", err)
	}
	dst, err := OriginalDst(c)
	c.Close()
	if err != nil || dst.String() != "127.0.0.1:8080" {
		t.Fatalf("OriginalDst = %v, %v", dst, err)
	}
	// Marked sockets pass the output rule: they reach port 8080 itself
	// (nothing listens there: refused, not redirected).
	var derr error
	netns.Do(ns, unix.CLONE_NEWNET, func() error {
		d := net.Dialer{Control: MarkControl, Timeout: 2 * time.Second}
		_, derr = d.Dial("tcp4", "127.0.0.1:8080")
		return nil
	})
	if derr == nil || !strings.Contains(derr.Error(), "refused") {
		t.Fatalf("marked dial = %v, want connection refused (not redirected)", derr)
	}
	if err := r.Redirect(9090, agentPort); err != nil {
		t.Fatal(err)
	}
	if err := r.Unredirect(8080); err != nil {
		t.Fatal(err)
	}
	if rs := listTables(t, ns); strings.Contains(rs, "dport 8080") || !strings.Contains(rs, "dport 9090") {
		t.Fatalf("after unredirect:\n%s", rs)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if rs := listTables(t, ns); strings.Contains(rs, table) {
		t.Fatalf("table left after Close:\n%s", rs)
	}
}

// TestRemoveTables: stale tables without an owner (from a kernel before
// 5.12, or an older tether) are removed; owned tables are the kernel's
// business and are left alone even when remove says yes.
func TestRemoveTables(t *testing.T) {
	ns := netnstest.New(t)
	if out, err := exec.Command("nsenter", "--net="+ns, "nft", "add table inet tether-deadbeef").CombinedOutput(); err != nil {
		t.Fatalf("nft add table: %v\n%s", err, out)
	}
	r, err := NewNftables(ns, TableName(os.Getpid(), 7))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Redirect(80, 1000); err != nil {
		t.Fatal(err)
	}
	removed, err := RemoveTables(ns, func(name string) bool { return true })
	if err != nil || len(removed) != 1 {
		t.Fatalf("RemoveTables = %v, %v", removed, err)
	}
	rs := listTables(t, ns)
	if strings.Contains(rs, "tether-deadbeef") || !strings.Contains(rs, TableName(os.Getpid(), 7)) {
		t.Fatalf("ruleset after removal:\n%s", rs)
	}
}

func TestKillConnections(t *testing.T) {
	ns := netnstest.New(t)
	var ln net.Listener
	if err := netns.Do(ns, unix.CLONE_NEWNET, func() error {
		l, err := net.Listen("tcp4", "127.0.0.1:8099")
		ln = l
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvErr <- err
			return
		}
		buf := make([]byte, 10)
		for {
			if _, err := c.Read(buf); err != nil {
				srvErr <- err
				return
			}
		}
	}()
	var client net.Conn
	netns.Do(ns, unix.CLONE_NEWNET, func() error {
		var err error
		client, err = net.Dial("tcp4", "127.0.0.1:8099")
		return err
	})
	if client == nil {
		t.Fatal("no client connection")
	}
	defer client.Close()
	client.Write([]byte("x"))
	time.Sleep(50 * time.Millisecond)
	n, err := KillConnections(ns, 8099)
	if err != nil || n != 1 {
		t.Fatalf("KillConnections = %d, %v; want 1 connection", n, err)
	}
	select {
	case err := <-srvErr:
		if !strings.Contains(err.Error(), "abort") {
			t.Fatalf("server side saw %v, want connection abort", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the server side of the connection was not reset")
	}
	client.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := client.Read(make([]byte, 1)); err == nil {
		t.Fatal("client read succeeded on a reset connection")
	}
}

// TestTransparentDial: with the table and policy routing in place, a
// socket bound to a foreign (client) address reaches a local server, which
// sees that address, and gets the server's replies.
func TestTransparentDial(t *testing.T) {
	ns := netnstest.New(t)
	out, err := exec.Command("nsenter", "--net="+ns, "ip", "addr", "add", "10.77.0.2/32", "dev", "lo").CombinedOutput()
	if err != nil {
		t.Fatalf("%v %s", err, out)
	}
	r, err := NewNftables(ns, TableName(os.Getpid(), 99))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.Redirect(9999, 1); err != nil {
		t.Fatal(err)
	}
	if err := r.TransparentErr(); err != nil {
		t.Fatalf("transparent routing: %v", err)
	}
	var ln net.Listener
	netns.Do(ns, unix.CLONE_NEWNET, func() error {
		ln, err = net.Listen("tcp4", "10.77.0.2:8080")
		return err
	})
	if ln == nil {
		t.Fatal(err)
	}
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		seen <- c.RemoteAddr().String()
		io.Copy(c, c)
		c.Close()
	}()
	from := netip.MustParseAddrPort("192.0.2.7:5555")
	var c net.Conn
	netns.Do(ns, unix.CLONE_NEWNET, func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from.Addr().AsSlice(), Port: int(from.Port())}, Control: TransparentControl(from), Timeout: 3 * time.Second}
		c, err = d.Dial("tcp4", "10.77.0.2:8080")
		return err
	})
	if err != nil {
		rs, _ := exec.Command("nsenter", "--net="+ns, "sh", "-c", "ip rule; ip route show table all | grep -v '^$'; nft list ruleset").CombinedOutput()
		t.Fatalf("transparent dial: %v\n%s", err, rs)
	}
	defer c.Close()
	if got := <-seen; got != from.String() {
		t.Fatalf("server saw %s, want %s", got, from)
	}
	c.Write([]byte("ping"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the transparent connection: %q, %v", buf, err)
	}
	// The agent's other sockets (AgentMark: a session's outgoing traffic)
	// must route normally, not to the local table: here, nowhere.
	var aerr error
	netns.Do(ns, unix.CLONE_NEWNET, func() error {
		d := net.Dialer{Control: MarkControl, Timeout: 2 * time.Second}
		_, aerr = d.Dial("tcp4", "192.0.2.99:80")
		return nil
	})
	if aerr == nil || !strings.Contains(aerr.Error(), "unreachable") {
		t.Fatalf("an AgentMark dial to a remote address = %v, want network unreachable (it must not be delivered locally)", aerr)
	}
	r.Close()
	if rs, _ := exec.Command("nsenter", "--net="+ns, "ip", "rule").CombinedOutput(); strings.Contains(string(rs), "0x7e7e") {
		t.Fatalf("policy rule left after Close:\n%s", rs)
	}
}

// startChild runs this test binary's test (its child branch, chosen by
// env) and waits until it prints "ready"; the child is killed and waited
// for at the end of the test.
func startChild(t *testing.T, test string, env ...string) (*exec.Cmd, io.Reader) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+test+"$")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	buf := make([]byte, 6)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "ready\n" {
		t.Fatalf("child: %q %v", buf, err)
	}
	return cmd, out
}

// TestTableDiesWithOwner: the table belongs to the agent process's netlink
// socket, so a SIGKILLed agent (or one the OOM killer ends together with
// its parent) leaves no redirect rule behind.
func TestTableDiesWithOwner(t *testing.T) {
	if ns := os.Getenv("TETHER_NFT_OWNER_NS"); ns != "" {
		// The child: install a redirect, say so, wait to be killed.
		r, err := NewNftables(ns, os.Getenv("TETHER_NFT_OWNER_TABLE"))
		if err == nil {
			err = r.Redirect(8080, 9999)
		}
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("ready")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	ns := netnstest.New(t)
	table := TableName(os.Getpid(), 2)
	cmd, _ := startChild(t, "TestTableDiesWithOwner", "TETHER_NFT_OWNER_NS="+ns, "TETHER_NFT_OWNER_TABLE="+table)
	if rs := listTables(t, ns); !strings.Contains(rs, table) || !strings.Contains(rs, "flags owner") {
		t.Fatalf("the child's table is not there, or not owned:\n%s", rs)
	}
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for strings.Contains(listTables(t, ns), table) {
		if time.Now().After(deadline) {
			t.Fatalf("table %s outlived its SIGKILLed owner:\n%s", table, listTables(t, ns))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestOwnerReleasedLast: when the agent is SIGKILLed while it holds
// redirected connections, each client sees its connection end (a FIN or a
// reset, translated back by the table), none waits forever: the kernel
// releases the table's owner socket after the connections' sockets.
func TestOwnerReleasedLast(t *testing.T) {
	const clients = 20
	if ns := os.Getenv("TETHER_NFT_LAST_NS"); ns != "" {
		holdConnections(ns, os.Getenv("TETHER_NFT_LAST_TABLE"), clients)
	}
	ns := netnstest.New(t)
	cmd, out := startChild(t, "TestOwnerReleasedLast", "TETHER_NFT_LAST_NS="+ns, "TETHER_NFT_LAST_TABLE="+TableName(os.Getpid(), 3))
	buf := make([]byte, 6)
	var conns []net.Conn
	for range clients {
		netns.Do(ns, unix.CLONE_NEWNET, func() error {
			c, err := net.DialTimeout("tcp4", "127.0.0.1:8080", 2*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
			return nil
		})
	}
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "held!\n" {
		t.Fatalf("child: %q %v", buf, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	hung := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			hung++
		}
		c.Close()
	}
	if hung > 0 {
		t.Errorf("%d of %d connections held by the SIGKILLed agent never ended for their clients (their last packets left untranslated)", hung, clients)
	}
}
