// Command tether-operator is tether's cluster component for teams: it
// serves tether's API (tether.dev) as an aggregated API behind the
// Kubernetes API server, so that developers open sessions with their own
// Kubernetes identity and RBAC on targets.tether.dev, without any right to
// create privileged pods; it starts and reuses the agents, proxies each
// session to its agent, and keeps the audit trail (Events, logs).
//
//	tether-operator [--namespace NS] [--agent-image IMAGE] [--tls-cert-file F --tls-private-key-file K]
//
// `tether operator install` deploys it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Run(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
