package session

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/tether-dev/tether/internal/agent"
	"github.com/tether-dev/tether/internal/config"
)

// BenchmarkRemoteStat measures one remote stat through the protocol (no
// supervisor): client session, yamux over loopback TCP, agent, os.Root.
func BenchmarkRemoteStat(b *testing.B) {
	dir := b.TempDir()
	os.MkdirAll(filepath.Join(dir, "app"), 0o755)
	os.WriteFile(filepath.Join(dir, "app/x.txt"), []byte("x"), 0o644)
	target, err := agent.NewDirTarget(dir, nil, "pod")
	if err != nil {
		b.Fatal(err)
	}
	ln, _ := net.Listen("tcp4", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&agent.Server{Target: target}).Serve(ctx, ln)
	conn, _ := net.Dial("tcp4", ln.Addr().String())
	s, err := New(ctx, conn, Options{Config: &config.Config{}})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	b.ResetTimer()
	for range b.N {
		if _, err := s.Stat(ctx, "/app/x.txt", true); err != nil {
			b.Fatal(err)
		}
	}
}
