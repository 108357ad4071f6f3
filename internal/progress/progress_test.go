package progress

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func fixedClock() func() time.Time {
	t := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(100 * time.Millisecond)
		return t
	}
}

func TestPlain(t *testing.T) {
	var b bytes.Buffer
	p := New(&b, "", false)
	p.now = fixedClock()
	s := p.Start("resolving target")
	s.Detail("3 pods ready")
	s.Done("pod api-1")
	p.Start("starting agent").Fail(errors.New("boom"))
	p.Info("config a.yaml")
	want := "tether: resolving target...\ntether:   3 pods ready\ntether: resolving target: pod api-1 (100ms)\n" +
		"tether: starting agent...\ntether: starting agent failed (100ms)\ntether: config a.yaml\n"
	if b.String() != want {
		t.Fatalf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestJSON(t *testing.T) {
	var b bytes.Buffer
	p := New(&b, ModeJSON, true)
	p.now = fixedClock()
	p.Start("connecting").Done("session 1")
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines = %q", lines)
	}
	var e event
	if err := json.Unmarshal([]byte(lines[1]), &e); err != nil || e.Type != "step-done" || e.Step != "connecting" || e.Detail != "session 1" || e.MS != 100 {
		t.Fatalf("event = %+v, %v", e, err)
	}
}

func TestTTY(t *testing.T) {
	var b syncBuf
	p := New(&b, "", true)
	s := p.Start("waiting")
	time.Sleep(150 * time.Millisecond)
	s.Done("ok")
	p.Close()
	out := b.String()
	if !strings.Contains(out, "⠋ waiting") || !strings.Contains(out, "✓ waiting: ok") {
		t.Fatalf("tty output %q", out)
	}
}

func TestParseMode(t *testing.T) {
	if _, err := ParseMode("fancy"); err == nil {
		t.Fatal("bad mode accepted")
	}
	if m, err := ParseMode("json"); err != nil || m != ModeJSON {
		t.Fatal(m, err)
	}
}

type syncBuf struct {
	mu bytes.Buffer
}

func (s *syncBuf) Write(b []byte) (int, error) { return s.mu.Write(b) }
func (s *syncBuf) String() string              { return s.mu.String() }

func TestPod(t *testing.T) {
	var b bytes.Buffer
	p := New(&b, ModeJSON, false)
	p.Pod("web-2", PodAgentReady, "agent ready in %s", "1s")
	var e map[string]string
	if err := json.Unmarshal(b.Bytes(), &e); err != nil {
		t.Fatal(err)
	}
	if e["type"] != "pod" || e["pod"] != "web-2" || e["event"] != "agent-ready" || e["detail"] != "agent ready in 1s" {
		t.Errorf("JSON pod event %v", e)
	}
	b.Reset()
	New(&b, ModePlain, false).Pod("web-2", PodGone, "gone")
	if b.String() != "tether: pod web-2: gone\n" {
		t.Errorf("plain pod event %q", b.String())
	}
	b.Reset()
	New(&b, ModeOff, false).Pod("web-2", PodGone, "gone")
	if b.Len() != 0 {
		t.Errorf("off: %q", b.String())
	}
}
