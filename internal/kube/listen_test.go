package kube

import "testing"

// TestListensOnPodIP: the direct transport tries only agents whose
// arguments (agentArgs) make them listen on their pod's IP.
func TestListensOnPodIP(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want bool
	}{
		{"listen all", agentArgs(AgentOptions{Port: 7077, ListenAll: true}, []string{"--node"}), true},
		{"loopback", agentArgs(AgentOptions{Port: 7077}, []string{"--node"}), false},
		{"localhost", []string{"--listen", "localhost:7077"}, false},
		{"ipv6 loopback", []string{"--listen", "[::1]:7077"}, false},
		{"ipv6 any", []string{"--listen", "[::]:7077"}, true},
		{"no listen flag", []string{"--node"}, false},
		{"flag without value", []string{"--listen"}, false},
		{"bad address", []string{"--listen", "7077"}, false},
	} {
		if got := listensOnPodIP(tc.args); got != tc.want {
			t.Errorf("%s: listensOnPodIP(%q) = %v, want %v", tc.name, tc.args, got, tc.want)
		}
	}
}
