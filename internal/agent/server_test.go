package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tether-dev/tether/internal/protocol"
)

// startServer runs a Server over a DirTarget rooted at a fresh directory
// and returns a connected client mux.
func startServer(t *testing.T) (string, protocol.Mux) {
	t.Helper()
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "app/config"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "app/response.txt"), []byte("hello from the pod\n"), 0o640))
	must(t, os.Symlink("/app/response.txt", filepath.Join(dir, "app/abs-link")))
	must(t, os.Symlink("../../etc", filepath.Join(dir, "app/config/escape")))
	must(t, os.MkdirAll(filepath.Join(dir, "etc"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "etc/hosts"), []byte("10.0.0.1 db\n"), 0o644))
	target, err := NewDirTarget(dir, []string{"A=1", "B=two"}, "pod-1")
	must(t, err)
	t.Cleanup(func() { target.Close() })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv := &Server{Target: target}
	go srv.Serve(ctx, ln)
	conn, err := net.Dial("tcp", ln.Addr().String())
	must(t, err)
	w, err := protocol.ClientHandshake(conn, protocol.Hello{Client: "test"})
	must(t, err)
	if w.Target.Hostname != "pod-1" || w.SessionID == "" {
		t.Fatalf("welcome = %+v", w)
	}
	mux, err := protocol.NewClientMux(conn)
	must(t, err)
	t.Cleanup(func() { mux.Close() })
	return dir, mux
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func call(t *testing.T, mux protocol.Mux, req protocol.Request, body []byte) (protocol.Response, []byte) {
	t.Helper()
	st, err := mux.Open()
	must(t, err)
	defer st.Close()
	must(t, protocol.WriteFrame(st, req))
	if body != nil {
		st.Write(body)
	}
	var resp protocol.Response
	must(t, protocol.ReadFrame(st, &resp))
	rest, _ := io.ReadAll(st)
	return resp, rest
}

func TestServerRequests(t *testing.T) {
	dir, mux := startServer(t)
	resp, _ := call(t, mux, protocol.Request{Op: protocol.OpEnv}, nil)
	if strings.Join(resp.Env, ",") != "A=1,B=two" {
		t.Errorf("env = %q", resp.Env)
	}
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpHostname}, nil)
	if resp.Hostname != "pod-1" {
		t.Errorf("hostname = %q", resp.Hostname)
	}
	resp, data := call(t, mux, protocol.Request{Op: protocol.OpRead, Path: "/app/response.txt"}, nil)
	if resp.Err() != nil || string(data) != "hello from the pod\n" || resp.Stat.Size != 19 || resp.Stat.Mode != syscall.S_IFREG|0o640 {
		t.Errorf("read = %+v %q", resp, data)
	}
	// An absolute symlink resolves inside the target's root, like chroot.
	resp, data = call(t, mux, protocol.Request{Op: protocol.OpRead, Path: "/app/abs-link"}, nil)
	if resp.Err() != nil || string(data) != "hello from the pod\n" {
		t.Errorf("read via absolute symlink = %+v %q", resp, data)
	}
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpStat, Path: "/app/abs-link", NoFollow: true}, nil)
	if resp.Stat == nil || resp.Stat.Mode&syscall.S_IFMT != syscall.S_IFLNK {
		t.Errorf("lstat of symlink = %+v", resp)
	}
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpReadlink, Path: "/app/abs-link"}, nil)
	if resp.Target != "/app/response.txt" {
		t.Errorf("readlink = %+v", resp)
	}
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpReadDir, Path: "/app"}, nil)
	var names []string
	for _, e := range resp.Entries {
		names = append(names, e.Name)
	}
	if strings.Join(names, ",") != "abs-link,config,response.txt" {
		t.Errorf("readdir = %v", names)
	}
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpRead, Path: "/app/missing"}, nil)
	if !errors.Is(resp.Err(), fs.ErrNotExist) {
		t.Errorf("read missing = %v", resp.Err())
	}
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpRead, Path: "/app"}, nil)
	if !errors.Is(resp.Err(), syscall.EISDIR) {
		t.Errorf("read dir = %v", resp.Err())
	}
	// Relative escapes stop at the root: /app/config/escape -> ../../etc = /etc.
	resp, data = call(t, mux, protocol.Request{Op: protocol.OpRead, Path: "/app/config/escape/hosts"}, nil)
	if resp.Err() != nil || string(data) != "10.0.0.1 db\n" {
		t.Errorf("read through relative symlink = %+v %q", resp, data)
	}
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpRead, Path: "/../../../../etc/passwd"}, nil)
	if !errors.Is(resp.Err(), fs.ErrNotExist) {
		t.Errorf("dot-dot above root = %v (must stay inside the root)", resp.Err())
	}
	body := []byte("written by tether")
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpWrite, Path: "/app/new.txt", Size: int64(len(body)), Perm: 0o600}, body)
	if resp.Err() != nil {
		t.Fatalf("write: %v", resp.Err())
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "app/new.txt")); !bytes.Equal(got, body) {
		t.Errorf("written file = %q", got)
	}
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpMkdir, Path: "/app/d", Perm: 0o755}, nil)
	must(t, resp.Err())
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpRename, Path: "/app/new.txt", NewPath: "/app/d/moved.txt"}, nil)
	must(t, resp.Err())
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpRemove, Path: "/app/d/moved.txt"}, nil)
	must(t, resp.Err())
	if _, err := os.Stat(filepath.Join(dir, "app/d/moved.txt")); !os.IsNotExist(err) {
		t.Errorf("remove left the file: %v", err)
	}
	resp, _ = call(t, mux, protocol.Request{Op: "teleport"}, nil)
	if !errors.Is(resp.Err(), syscall.ENOSYS) {
		t.Errorf("unknown op = %v", resp.Err())
	}
}

func TestServerDial(t *testing.T) {
	_, mux := startServer(t)
	echo, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer echo.Close()
	go func() {
		c, err := echo.Accept()
		if err != nil {
			return
		}
		io.Copy(c, c)
		c.(*net.TCPConn).CloseWrite()
	}()
	st, err := mux.Open()
	must(t, err)
	must(t, protocol.WriteFrame(st, protocol.Request{Op: protocol.OpDial, Network: "tcp", Addr: echo.Addr().String()}))
	var resp protocol.Response
	must(t, protocol.ReadFrame(st, &resp))
	must(t, resp.Err())
	st.Write([]byte("ping"))
	st.CloseWrite()
	got, _ := io.ReadAll(st)
	if string(got) != "ping" {
		t.Fatalf("echo through dial = %q", got)
	}

	// A refused connect reports ECONNREFUSED.
	echo.Close()
	resp, _ = call(t, mux, protocol.Request{Op: protocol.OpDial, Network: "tcp", Addr: echo.Addr().String()}, nil)
	if !errors.Is(resp.Err(), syscall.ECONNREFUSED) {
		t.Fatalf("dial to a closed port = %v, want ECONNREFUSED", resp.Err())
	}
}

func TestServerDialUDP(t *testing.T) {
	_, mux := startServer(t)
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	must(t, err)
	defer pc.Close()
	go func() {
		buf := make([]byte, 1500)
		n, from, err := pc.ReadFrom(buf)
		if err == nil {
			pc.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	st, err := mux.Open()
	must(t, err)
	defer st.Close()
	must(t, protocol.WriteFrame(st, protocol.Request{Op: protocol.OpDial, Network: "udp", Addr: pc.LocalAddr().String()}))
	var resp protocol.Response
	must(t, protocol.ReadFrame(st, &resp))
	must(t, resp.Err())
	must(t, protocol.WriteDatagram(st, []byte("hi")))
	buf := make([]byte, protocol.MaxDatagram)
	n, err := protocol.ReadDatagram(st, buf)
	must(t, err)
	if string(buf[:n]) != "echo:hi" {
		t.Fatalf("udp reply = %q", buf[:n])
	}
}

func FuzzResolve(f *testing.F) {
	dir := f.TempDir()
	os.MkdirAll(filepath.Join(dir, "a/b"), 0o755)
	os.Symlink("/a", filepath.Join(dir, "a/b/up"))
	os.Symlink("../../../..", filepath.Join(dir, "a/b/dots"))
	os.Symlink("loop", filepath.Join(dir, "loop"))
	root, err := os.OpenRoot(dir)
	if err != nil {
		f.Fatal(err)
	}
	defer root.Close()
	for _, s := range []string{"/a/b/up/b/dots/etc", "/loop", "../../x", "/a/./b/../b", ""} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, p string, follow bool) {
		rel, err := resolve(root, p, follow)
		if err != nil {
			return
		}
		if strings.HasPrefix(rel, "/") || rel == ".." || strings.HasPrefix(rel, "../") || strings.Contains(rel, "/../") {
			t.Fatalf("resolve(%q) = %q escapes the root", p, rel)
		}
	})
}

func TestServerToken(t *testing.T) {
	target, err := NewDirTarget(t.TempDir(), nil, "pod")
	must(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&Server{Target: target, Token: "s3cret"}).Serve(ctx, ln)
	for _, tc := range []struct {
		token string
		ok    bool
	}{{"s3cret", true}, {"wrong", false}, {"", false}} {
		conn, err := net.Dial("tcp", ln.Addr().String())
		must(t, err)
		_, err = protocol.ClientHandshake(conn, protocol.Hello{Token: tc.token})
		conn.Close()
		if tc.ok != (err == nil) {
			t.Errorf("token %q: handshake err = %v", tc.token, err)
		}
		if err != nil && !strings.Contains(err.Error(), "agent token") {
			t.Errorf("refusal does not say why: %v", err)
		}
	}
}
