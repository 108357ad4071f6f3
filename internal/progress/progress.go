// Package progress is tether's start-up output: a spinner tree on a
// terminal, plain lines in CI and logs, JSON lines for IDE plugins, or
// nothing. It writes to one stream (stderr), never to the command's stdout.
package progress

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Mode selects the output format.
type Mode string

// Modes.
const (
	ModeTTY   Mode = "tty"
	ModePlain Mode = "plain"
	ModeJSON  Mode = "json"
	ModeOff   Mode = "off"
)

// ParseMode checks a --progress value ("" = auto).
func ParseMode(s string) (Mode, error) {
	switch m := Mode(s); m {
	case "", ModeTTY, ModePlain, ModeJSON, ModeOff:
		return m, nil
	}
	return "", fmt.Errorf("--progress %q: want tty, plain, json or off", s)
}

// Writer reports steps.
type Writer struct {
	mode Mode
	w    io.Writer
	mu   sync.Mutex
	now  func() time.Time

	spin     *Step // the step whose spinner line is live (tty)
	stopSpin chan struct{}
}

// New returns a Writer. An empty mode picks tty when isTTY, else plain.
func New(w io.Writer, mode Mode, isTTY bool) *Writer {
	if mode == "" {
		mode = ModePlain
		if isTTY {
			mode = ModeTTY
		}
	}
	return &Writer{mode: mode, w: w, now: time.Now}
}

// Step is one start-up step.
type Step struct {
	p     *Writer
	name  string
	start time.Time
	done  bool
}

type event struct {
	Type   string `json:"type"`
	Step   string `json:"step,omitempty"`
	Pod    string `json:"pod,omitempty"`
	Event  string `json:"event,omitempty"`
	Detail string `json:"detail,omitempty"`
	Error  string `json:"error,omitempty"`
	MS     int64  `json:"ms,omitempty"`
}

func (p *Writer) emit(e event) {
	b, _ := json.Marshal(e)
	fmt.Fprintf(p.w, "%s\n", b)
}

var spinner = []string{"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"}

// Start begins a step ("resolving target").
func (p *Writer) Start(name string) *Step {
	s := &Step{p: p, name: name, start: p.now()}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.mode {
	case ModeJSON:
		p.emit(event{Type: "step-start", Step: name})
	case ModePlain:
		fmt.Fprintf(p.w, "tether: %s...\n", name)
	case ModeTTY:
		p.stopSpinnerLocked()
		p.spin = s
		p.stopSpin = make(chan struct{})
		go p.animate(s, p.stopSpin)
	}
	return s
}

func (p *Writer) animate(s *Step, stop chan struct{}) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for i := 0; ; i++ {
		p.mu.Lock()
		if p.spin == s {
			fmt.Fprintf(p.w, "\r\x1b[K%s %s", spinner[i%len(spinner)], s.name)
		}
		p.mu.Unlock()
		select {
		case <-stop:
			return
		case <-t.C:
		}
	}
}

func (p *Writer) stopSpinnerLocked() {
	if p.stopSpin != nil {
		close(p.stopSpin)
		p.stopSpin = nil
	}
	if p.spin != nil {
		fmt.Fprint(p.w, "\r\x1b[K")
		p.spin = nil
	}
}

// Detail adds a line under the running step ("created agent job ...").
func (s *Step) Detail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.mode {
	case ModeJSON:
		p.emit(event{Type: "step-detail", Step: s.name, Detail: msg})
	case ModePlain:
		fmt.Fprintf(p.w, "tether:   %s\n", msg)
	case ModeTTY:
		fmt.Fprintf(p.w, "\r\x1b[K  · %s\n", msg)
	}
}

// Done ends the step successfully with what it found.
func (s *Step) Done(detail string) {
	s.end(detail, nil)
}

// Fail ends the step with err (the caller still reports err itself).
func (s *Step) Fail(err error) { s.end("", err) }

func (s *Step) end(detail string, err error) {
	p := s.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	took := p.now().Sub(s.start)
	switch p.mode {
	case ModeJSON:
		e := event{Type: "step-done", Step: s.name, Detail: detail, MS: took.Milliseconds()}
		if err != nil {
			e.Type, e.Error = "step-failed", err.Error()
		}
		p.emit(e)
	case ModePlain:
		if err != nil {
			fmt.Fprintf(p.w, "tether: %s failed (%s)\n", s.name, round(took))
		} else {
			fmt.Fprintf(p.w, "tether: %s: %s (%s)\n", s.name, detail, round(took))
		}
	case ModeTTY:
		if p.spin == s {
			p.stopSpinnerLocked()
		}
		if err != nil {
			fmt.Fprintf(p.w, "✗ %s (%s)\n", s.name, round(took))
		} else {
			fmt.Fprintf(p.w, "✓ %s: %s (%s)\n", s.name, detail, round(took))
		}
	}
}

// Info prints a line that is not a step (the config summary).
func (p *Writer) Info(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.mode {
	case ModeJSON:
		p.emit(event{Type: "info", Detail: msg})
	case ModeOff:
	default:
		for _, l := range strings.Split(msg, "\n") {
			fmt.Fprintf(p.w, "tether: %s\n", l)
		}
	}
}

// Pod events of a session on several pods (a workload's replicas).
const (
	PodAgentStarting = "agent-starting"
	PodAgentReady    = "agent-ready"
	PodAgentFailed   = "agent-failed"
	PodConnected     = "connected"
	PodGone          = "gone"
)

// Pod reports an event of one pod's agent (PodAgentReady...), with what
// happened for the user; in JSON as {"type":"pod","pod":...,"event":...}.
func (p *Writer) Pod(pod, ev, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.mu.Lock()
	defer p.mu.Unlock()
	switch p.mode {
	case ModeJSON:
		p.emit(event{Type: "pod", Pod: pod, Event: ev, Detail: msg})
	case ModeOff:
	default:
		fmt.Fprintf(p.w, "tether: pod %s: %s\n", pod, msg)
	}
}

// Close stops any spinner.
func (p *Writer) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopSpinnerLocked()
}

func round(d time.Duration) string {
	if d < time.Second {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}
