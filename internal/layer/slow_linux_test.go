package layer

import (
	"context"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
)

// TestSlowWhileFinishing: a handler started as the command exits (a
// notification another of its threads made) while finish waits for the
// handlers: no data race between the two (go test -race), and every
// handler runs.
func TestSlowWhileFinishing(t *testing.T) {
	s, err := newSupervisor(context.Background(), nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	for range 2000 {
		var ran atomic.Int64
		start := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			<-start
			s.slow(func() { ran.Add(1) })
		}()
		close(start)
		s.finish()
		<-done
		for ran.Load() != 1 {
			runtime.Gosched() // one started after finish runs untracked
		}
		s.wgMu.Lock()
		s.finished = false // the next round
		s.wgMu.Unlock()
	}
}
