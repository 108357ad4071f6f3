package main

import (
	"log/slog"
	"os"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// TestReportTargets: the worker's reports reach the parent's list, also
// after a garbage collection between them (the pipe's descriptor must stay
// the pipe's).
func TestReportTargets(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	t.Setenv(targetsFDEnv, strconv.Itoa(int(w.Fd())))
	reportTarget(123)
	runtime.GC()
	runtime.GC()
	reportTarget(456)
	w.Close() // the worker exits: its end closes
	var got targetPIDs
	got.read(r)
	if pids := got.list(); !slices.Equal(pids, []int{123, 456}) {
		t.Errorf("the parent read %v, want [123 456]", pids)
	}
}

type fakeIdle struct{ sessions, unreported atomic.Int32 }

func (f *fakeIdle) Sessions() int   { return int(f.sessions.Load()) }
func (f *fakeIdle) Unreported() int { return int(f.unreported.Load()) }

// TestExitWhenIdle: an idle agent exits after linger, but waits (up to
// reportWait more) while ends are unreported to the operator.
func TestExitWhenIdle(t *testing.T) {
	run := func(f *fakeIdle, linger time.Duration) time.Duration {
		start := time.Now()
		stopped := make(chan struct{})
		go exitWhenIdle(f, linger, func() { close(stopped) }, slog.New(slog.DiscardHandler))
		<-stopped
		return time.Since(start)
	}
	if d := run(&fakeIdle{}, 200*time.Millisecond); d < 200*time.Millisecond || d > 2*time.Second {
		t.Errorf("idle agent exited after %v, want about its linger (200ms)", d)
	}
	f := &fakeIdle{}
	f.unreported.Store(1)
	go func() { time.Sleep(time.Second); f.unreported.Store(0) }()
	if d := run(f, 200*time.Millisecond); d < time.Second || d > 3*time.Second {
		t.Errorf("with an end unreported for 1s the agent exited after %v, want just after 1s", d)
	}
}
