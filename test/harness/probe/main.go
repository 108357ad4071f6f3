// Command probe is a small static Go program (CGO_ENABLED=0, netgo: Go's
// pure resolver) that the tether integration tests run with and without
// tether. Each subcommand prints a few lines that the tests check; errors
// go to stderr with exit status 1.
//
//	probe env NAME...          NAME=value lines ("unset NAME" if absent)
//	probe get URL              HTTP GET: "status: N", "remote: ADDR", "", body
//	probe resolve NAME         addresses, one a line (sorted)
//	probe read FILE            the file's content
//	probe ls DIR               entry names, one a line
//	probe stat FILE            "size=N mode=MODE dir=BOOL"
//	probe fstat PATH...        raw stat, lstat and fstat (of an O_RDONLY fd) as
//	                           JSON {PATH: {"stat", "lstat", "fstat": statJSON}}
//	probe hostname             os.Hostname()
//	probe write FILE TEXT      os.WriteFile
//	probe udp ADDR MSG         connected UDP: "reply: ...", "remote: ADDR"
//	probe tcp ADDR MSG         TCP: "reply: ...", "remote: ADDR" (getpeername)
//	probe nbconnect ADDR [MSG] non-blocking connect with raw syscalls, poll,
//	                           SO_ERROR: "connect: ...", "peer: ADDR", "reply: ..."
//	probe uring                io_uring_setup: "io_uring: ok" or "io_uring: errno=N (...)"
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"os"
	"sort"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: probe env|get|resolve|read|ls|stat|fstat|hostname|write|udp|tcp|nbconnect|uring ARGS...")
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "env":
		err = envCmd(args)
	case "get":
		err = need(args, 1, getCmd)
	case "resolve":
		err = need(args, 1, resolveCmd)
	case "read":
		err = need(args, 1, readCmd)
	case "ls":
		err = need(args, 1, lsCmd)
	case "stat":
		err = need(args, 1, statCmd)
	case "fstat":
		err = need(args, 1, fstatCmd)
	case "hostname":
		err = hostnameCmd()
	case "write":
		err = need(args, 2, writeCmd)
	case "udp":
		err = need(args, 2, udpCmd)
	case "tcp":
		err = need(args, 2, tcpCmd)
	case "nbconnect":
		err = need(args, 1, nbconnectCmd)
	case "uring":
		err = uringCmd()
	default:
		err = fmt.Errorf("unknown subcommand %q", cmd)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func need(args []string, n int, fn func([]string) error) error {
	if len(args) < n {
		return fmt.Errorf("need %d argument(s), got %d", n, len(args))
	}
	return fn(args)
}

func envCmd(names []string) error {
	if len(names) == 0 {
		for _, kv := range os.Environ() {
			fmt.Println(kv)
		}
		return nil
	}
	for _, n := range names {
		if v, ok := os.LookupEnv(n); ok {
			fmt.Printf("%s=%s\n", n, v)
		} else {
			fmt.Printf("unset %s\n", n)
		}
	}
	return nil
}

func getCmd(args []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var remote string
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		remote = info.Conn.RemoteAddr().String()
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), http.MethodGet, args[0], nil)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	fmt.Printf("status: %d\nremote: %s\n\n%s", resp.StatusCode, remote, body)
	return nil
}

func resolveCmd(args []string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, args[0])
	if err != nil {
		return err
	}
	sort.Strings(addrs)
	for _, a := range addrs {
		fmt.Println(a)
	}
	return nil
}

func readCmd(args []string) error {
	b, err := os.ReadFile(args[0])
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}

func lsCmd(args []string) error {
	ents, err := os.ReadDir(args[0])
	if err != nil {
		return err
	}
	for _, e := range ents {
		fmt.Println(e.Name())
	}
	return nil
}

func statCmd(args []string) error {
	st, err := os.Stat(args[0])
	if err != nil {
		return err
	}
	fmt.Printf("size=%d mode=%v dir=%v\n", st.Size(), st.Mode(), st.IsDir())
	return nil
}

func hostnameCmd() error {
	h, err := os.Hostname()
	if err != nil {
		return err
	}
	fmt.Println(h)
	return nil
}

func writeCmd(args []string) error {
	if err := os.WriteFile(args[0], []byte(args[1]), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %d bytes to %s\n", len(args[1]), args[0])
	return nil
}

func udpCmd(args []string) error {
	c, err := net.Dial("udp", args[0])
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.Write([]byte(args[1])); err != nil {
		return err
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64*1024)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	fmt.Printf("reply: %s\nremote: %s\n", buf[:n], c.RemoteAddr())
	return nil
}

func tcpCmd(args []string) error {
	c, err := net.DialTimeout("tcp", args[0], 15*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := c.Write([]byte(args[1])); err != nil {
		return err
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		return err
	}
	reply, err := io.ReadAll(c)
	if err != nil {
		return err
	}
	fmt.Printf("reply: %s\nremote: %s\n", reply, c.RemoteAddr())
	return nil
}

// nbconnectCmd connects without the Go runtime's help: socket(NONBLOCK),
// connect (EINPROGRESS), poll(POLLOUT), getsockopt(SO_ERROR), getpeername.
func nbconnectCmd(args []string) error {
	ap, err := netip.ParseAddrPort(args[0])
	if err != nil || !ap.Addr().Is4() {
		return fmt.Errorf("want IPv4:PORT, got %q", args[0])
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	err = unix.Connect(fd, sa)
	switch {
	case err == nil:
		fmt.Println("connect: 0")
	case errors.Is(err, unix.EINPROGRESS):
		fmt.Println("connect: EINPROGRESS")
		if err := pollFd(fd, unix.POLLOUT, 15*time.Second); err != nil {
			return err
		}
		soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return fmt.Errorf("getsockopt SO_ERROR: %w", err)
		}
		if soerr != 0 {
			return fmt.Errorf("connect (SO_ERROR): %w", unix.Errno(soerr))
		}
	default:
		return fmt.Errorf("connect: %w", err)
	}
	peer, err := unix.Getpeername(fd)
	if err != nil {
		return fmt.Errorf("getpeername: %w", err)
	}
	if p, ok := peer.(*unix.SockaddrInet4); ok {
		fmt.Printf("peer: %s\n", netip.AddrPortFrom(netip.AddrFrom4(p.Addr), uint16(p.Port)))
	} else {
		fmt.Printf("peer: %T\n", peer)
	}
	if len(args) < 2 {
		return nil
	}
	msg := []byte(args[1])
	for len(msg) > 0 {
		if err := pollFd(fd, unix.POLLOUT, 15*time.Second); err != nil {
			return err
		}
		n, err := unix.Write(fd, msg)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				continue
			}
			return fmt.Errorf("write: %w", err)
		}
		msg = msg[n:]
	}
	if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	var reply []byte
	buf := make([]byte, 4096)
	for {
		if err := pollFd(fd, unix.POLLIN, 15*time.Second); err != nil {
			return err
		}
		n, err := unix.Read(fd, buf)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				continue
			}
			return fmt.Errorf("read: %w", err)
		}
		if n == 0 {
			break
		}
		reply = append(reply, buf[:n]...)
	}
	fmt.Printf("reply: %s\n", reply)
	return nil
}

func pollFd(fd int, events int16, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("poll: timed out after %v", timeout)
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: events}}
		n, err := unix.Poll(pfd, int(left/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll: %w", err)
		}
		if n > 0 {
			return nil
		}
	}
}

// sysIoUringSetup is io_uring_setup on every architecture that has it in
// the generic table (x86_64, arm64).
const sysIoUringSetup = 425

func uringCmd() error {
	var params [15]uint64 // struct io_uring_params is 120 bytes
	r, _, errno := unix.Syscall(sysIoUringSetup, 4, uintptr(unsafe.Pointer(&params[0])), 0)
	if errno != 0 {
		fmt.Printf("io_uring: errno=%d (%s)\n", int(errno), strings.ToLower(errno.Error()))
		return nil
	}
	unix.Close(int(r))
	fmt.Println("io_uring: ok")
	return nil
}
