package harness

import (
	"bytes"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads, which
// can wait for content.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	changed chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{changed: make(chan struct{})} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, err := b.buf.Write(p)
	close(b.changed)
	b.changed = make(chan struct{})
	return n, err
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the content contains substr, or done is closed, or
// the timeout passes. It reports whether substr was seen.
func (b *syncBuffer) waitFor(substr string, timeout time.Duration, done <-chan struct{}) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		ok := strings.Contains(b.buf.String(), substr)
		ch := b.changed
		b.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-done:
			// One last look: output may have arrived with the exit.
			return strings.Contains(b.String(), substr)
		case <-deadline.C:
			return false
		}
	}
}

// proc is a started child process with a background Wait.
type proc struct {
	cmd     *exec.Cmd
	done    chan struct{} // closed when Wait returned; then waitErr, end are set
	waitErr error
	end     time.Time
}

// startProc starts cmd with the parent-death signal set (so it dies with
// the test binary), records its PID for the stale sweep and waits for it in
// the background.
func startProc(cmd *exec.Cmd) (*proc, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	if cmd.WaitDelay == 0 {
		// Grandchildren may keep our output pipes open; don't wait for them.
		cmd.WaitDelay = 2 * time.Second
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	recordProcess(cmd.Process.Pid)
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		p.end = time.Now()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// wait waits up to timeout for the process to exit.
func (p *proc) wait(timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// stop ends the process by its PID: sig first (if non-zero), SIGKILL after
// grace. With group set, the process group it leads (created by us with
// Setpgid) is killed too, to reach its children.
func (p *proc) stop(sig syscall.Signal, grace time.Duration, group bool) {
	if p.exited() {
		if group {
			syscall.Kill(-p.pid(), syscall.SIGKILL)
		}
		return
	}
	if sig != 0 {
		p.cmd.Process.Signal(sig)
		if p.wait(grace) {
			if group {
				syscall.Kill(-p.pid(), syscall.SIGKILL)
			}
			return
		}
	}
	if group {
		syscall.Kill(-p.pid(), syscall.SIGKILL)
	}
	p.cmd.Process.Kill()
	p.wait(10 * time.Second)
}

// LockedWriter writes to B under Mu: a process's stdout and stderr
// buffers sharing one lock, read while the process runs.
type LockedWriter struct {
	Mu *sync.Mutex
	B  *bytes.Buffer
}

func (w LockedWriter) Write(b []byte) (int, error) {
	w.Mu.Lock()
	defer w.Mu.Unlock()
	return w.B.Write(b)
}
