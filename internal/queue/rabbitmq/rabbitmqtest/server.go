// Package rabbitmqtest starts Debian's rabbitmq-server on loopback for
// tests and benchmarks, as net/http/httptest starts a server: its own
// ports, its own epmd, its own files, all gone after Stop.
package rabbitmqtest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Server is a running rabbitmq-server and its epmd.
type Server struct {
	// URL is its AMQP URL (user guest).
	URL string
	// Pid is the rabbitmq-server process (its beam.smp is a child).
	Pid        int
	dir        string
	epmd, node *exec.Cmd
	log        lockedLog
}

// lockedLog collects the output of epmd and the node, which write from
// two goroutines of os/exec each.
type lockedLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// FreePort is a loopback TCP port nothing listens on now.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start starts a rabbitmq-server of its own: its files in a new temporary
// directory, its AMQP, distribution and epmd ports free loopback ports.
// It returns once the server accepts connections; Stop ends it.
func Start() (*Server, error) {
	bin := "/usr/lib/rabbitmq/bin/rabbitmq-server"
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("rabbitmq-server is not installed (%v): run hack/install-deps.sh", err)
	}
	epmdBin, err := exec.LookPath("epmd")
	if err != nil {
		return nil, fmt.Errorf("epmd (erlang-base) is not installed: run hack/install-deps.sh")
	}
	dir, err := os.MkdirTemp("", "tether-rabbitmq-")
	if err != nil {
		return nil, err
	}
	var ports [3]int
	for i := range ports {
		if ports[i], err = FreePort(); err != nil {
			return nil, err
		}
	}
	amqpPort, distPort, epmdPort := ports[0], ports[1], ports[2]
	s := &Server{dir: dir, URL: fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", amqpPort)}
	for name, body := range map[string]string{
		"rabbitmq.conf":   "loopback_users = none\n",
		"enabled_plugins": "[].\n",
		"env.conf":        "",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			return nil, err
		}
	}
	s.epmd = exec.Command(epmdBin, "-port", strconv.Itoa(epmdPort), "-address", "127.0.0.1")
	s.epmd.Stdout, s.epmd.Stderr = &s.log, &s.log
	if err := s.epmd.Start(); err != nil {
		return nil, fmt.Errorf("epmd: %w", err)
	}
	s.node = exec.Command(bin)
	s.node.Env = append(os.Environ(),
		"HOME="+dir,
		"RABBITMQ_CONF_ENV_FILE="+filepath.Join(dir, "env.conf"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "enabled_plugins"),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_LOGS=-",
		fmt.Sprintf("RABBITMQ_NODENAME=tether-test-%d@localhost", amqpPort),
		"RABBITMQ_NODE_IP_ADDRESS=127.0.0.1",
		"RABBITMQ_NODE_PORT="+strconv.Itoa(amqpPort),
		"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
		"ERL_EPMD_PORT="+strconv.Itoa(epmdPort),
		"ERL_EPMD_ADDRESS=127.0.0.1",
	)
	s.node.Stdout, s.node.Stderr = &s.log, &s.log
	s.node.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // beam.smp and its helpers: one group to stop
	if err := s.node.Start(); err != nil {
		s.Stop()
		return nil, fmt.Errorf("rabbitmq-server: %w", err)
	}
	s.Pid = s.node.Process.Pid
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		c, err := amqp.Dial(s.URL)
		if err == nil {
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return nil, fmt.Errorf("rabbitmq-server did not accept connections on %s within 60s (%v):\n%s", s.URL, err, s.log.String())
		}
	}
}

// Stop ends the node's process group and then epmd, and removes the
// node's files.
func (s *Server) Stop() {
	if s.node != nil && s.node.Process != nil {
		_ = syscall.Kill(-s.node.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = s.node.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-s.node.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
	if s.epmd != nil && s.epmd.Process != nil {
		_ = s.epmd.Process.Kill()
		_ = s.epmd.Wait()
	}
	_ = os.RemoveAll(s.dir)
}
