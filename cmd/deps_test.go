package cmd_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencies: each binary links only what it uses. The agent runs
// in every target's node and the CLI on every laptop: neither links the
// operator's API server or controller framework.
func TestDependencies(t *testing.T) {
	forbidden := map[string][]string{
		"./tether-agent": {"sigs.k8s.io/controller-runtime", "k8s.io/apiserver", "github.com/tether-dev/tether/internal/operator", "github.com/tether-dev/tether/internal/queue", "github.com/twmb/franz-go", "github.com/rabbitmq/amqp091-go", "github.com/aws/aws-sdk-go-v2"},
		"./tether":       {"sigs.k8s.io/controller-runtime", "k8s.io/apiserver", "github.com/tether-dev/tether/internal/operator", "github.com/tether-dev/tether/internal/queue", "github.com/twmb/franz-go", "github.com/rabbitmq/amqp091-go", "github.com/aws/aws-sdk-go-v2"},
	}
	for pkg, bad := range forbidden {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, b := range bad {
				if dep == b || strings.HasPrefix(dep, b+"/") {
					t.Errorf("%s links %s", pkg, dep)
				}
			}
		}
	}
}
