package netfilter

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tether-dev/tether/internal/netns"

	"github.com/tether-dev/tether/internal/netns/netnstest"
)

// holdConnections is the child of the death tests: an agent that
// redirects port 8080 in the namespace ns to its listener, says "ready",
// accepts and holds n connections, says "held!" and waits to be killed
// (connections after those wait in its listener's queue).
func holdConnections(ns, table string, n int) {
	var ln *net.TCPListener
	err := netns.Do(ns, unix.CLONE_NEWNET, func() (err error) {
		ln, err = net.ListenTCP("tcp4", &net.TCPAddr{})
		return err
	})
	var r *Nftables
	if err == nil {
		r, err = NewNftables(ns, table)
	}
	if err == nil {
		err = r.Redirect(8080, uint16(ln.Addr().(*net.TCPAddr).Port))
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	var conns []net.Conn
	for range n {
		c, err := ln.Accept()
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		conns = append(conns, c)
	}
	fmt.Println("held!")
	time.Sleep(time.Minute) // the test kills it
	for _, c := range conns {
		c.Close()
	}
	os.Exit(0)
}

// TestRulesReleasedFirst: when the agent is SIGKILLed while clients keep
// opening connections to the app's port, none is refused. The redirect
// rules go first (before the agent's listener): a connection opened
// until then lands in the listener's queue and dies with the agent (a
// reset, in flight at its death); one opened after reaches the app. Were
// the rules released after the listener, the connections opened in
// between would be redirected to a closed port and refused. The
// connections the agent held at its death each end for their client
// (TestOwnerReleasedLast).
func TestRulesReleasedFirst(t *testing.T) {
	const held = 50
	if ns := os.Getenv("TETHER_NFT_FIRST_NS"); ns != "" {
		holdConnections(ns, os.Getenv("TETHER_NFT_FIRST_TABLE"), held)
	}
	ns := netnstest.New(t)
	// The app on the port the agent redirects.
	var app net.Listener
	if err := netns.Do(ns, unix.CLONE_NEWNET, func() (err error) {
		app, err = net.Listen("tcp4", "127.0.0.1:8080")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	var reachedApp atomic.Int64
	go func() {
		for {
			c, err := app.Accept()
			if err != nil {
				return
			}
			reachedApp.Add(1)
			c.Close()
		}
	}()
	cmd, out := startChild(t, "TestRulesReleasedFirst", "TETHER_NFT_FIRST_NS="+ns, "TETHER_NFT_FIRST_TABLE="+TableName(os.Getpid(), 4))
	dial := func() (net.Conn, error) {
		var c net.Conn
		err := netns.Do(ns, unix.CLONE_NEWNET, func() (err error) {
			c, err = net.DialTimeout("tcp4", "127.0.0.1:8080", 2*time.Second)
			return err
		})
		return c, err
	}
	var conns []net.Conn
	for range held {
		c, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	buf := make([]byte, 6)
	if _, err := io.ReadFull(out, buf); err != nil || string(buf) != "held!\n" {
		t.Fatalf("child: %q %v", buf, err)
	}
	// Clients opening connection after connection, through the death. A
	// reset is one that landed in the agent's queue (in flight at its
	// death); once the agent is gone (reaped), every one must work.
	var refused, reset, opened atomic.Int64
	var other atomic.Value
	var dead atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			netns.Do(ns, unix.CLONE_NEWNET, func() error {
				for {
					select {
					case <-stop:
						return nil
					default:
					}
					after := dead.Load()
					c, err := net.DialTimeout("tcp4", "127.0.0.1:8080", 2*time.Second)
					switch {
					case err == nil:
						opened.Add(1)
						c.Close()
					case after:
						other.Store(fmt.Errorf("after the agent's death: %w", err))
					case errors.Is(err, syscall.ECONNREFUSED):
						refused.Add(1)
					case errors.Is(err, syscall.ECONNRESET):
						reset.Add(1)
					default:
						other.Store(err)
					}
				}
			})
		})
	}
	time.Sleep(50 * time.Millisecond)
	cmd.Process.Kill()
	cmd.Wait()
	dead.Store(true)
	time.Sleep(100 * time.Millisecond)
	close(stop)
	wg.Wait()
	if err, _ := other.Load().(error); err != nil {
		t.Errorf("a connection failed otherwise: %v", err)
	}
	if n := refused.Load(); n > 0 {
		t.Errorf("%d of %d connections opened through the agent's death were refused (redirected to its closed listener)", n, n+opened.Load())
	}
	if reachedApp.Load() == 0 {
		t.Errorf("no connection reached the app after the agent's death (%d opened)", opened.Load())
	}
	t.Logf("%d connections opened through the death, %d refused, %d reset (in flight at the death), %d reached the app", opened.Load(), refused.Load(), reset.Load(), reachedApp.Load())
}
