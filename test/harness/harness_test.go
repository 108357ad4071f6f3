package harness

import "testing"

func TestParseAgentListenLine(t *testing.T) {
	for _, c := range []struct {
		line, addr string
		ok         bool
	}{
		{"tether-agent listening on 127.0.0.1:41234", "127.0.0.1:41234", true},
		{"tether-agent listening on 127.0.0.1:41234\r", "127.0.0.1:41234", true},
		{"  tether-agent listening on [::1]:80 ", "[::1]:80", true},
		{"tether-agent listening on ", "", false},
		{"tether-agent listening on 127.0.0.1", "", false},
		{"agent ready 127.0.0.1:1", "", false},
		{"tether-agent listening on 127.0.0.1:1 extra", "", false},
	} {
		addr, ok := ParseAgentListenLine(c.line)
		if addr != c.addr || ok != c.ok {
			t.Errorf("ParseAgentListenLine(%q) = %q, %v; want %q, %v", c.line, addr, ok, c.addr, c.ok)
		}
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2", "C=3"}, []string{"B=x", "D=4"})
	want := []string{"A=1", "C=3", "B=x", "D=4"}
	if len(got) != len(want) {
		t.Fatalf("mergeEnv = %q, want %q", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("mergeEnv = %q, want %q", got, want)
		}
	}
}

func TestShellQuote(t *testing.T) {
	got := shellQuote([]string{"sh", "-c", "echo 'hi' | wc -c", ""})
	want := `sh -c 'echo '\''hi'\'' | wc -c' ''`
	if got != want {
		t.Fatalf("shellQuote = %s, want %s", got, want)
	}
}
