// Package integration holds tether's data-plane integration tests: a local
// process run with `tether exec` against a tether-agent attached to a fake
// pod (see package harness) must see the pod's environment, files, DNS,
// hostname and outgoing network. They run with TETHER_INTEGRATION=1, as
// root (make test); otherwise they are skipped.
package integration
