package v1alpha1

import (
	"fmt"
	"strings"
)

// Incoming describes a session's subscriptions, e.g.
// "steal 80 (header ~ ^x-tether-user: me$), mirror 9090"; "-" for none.
func (s *Session) Incoming() string {
	var parts []string
	for _, p := range s.Status.Ports {
		part := fmt.Sprintf("%s %d", p.Mode, p.Port)
		if p.Filter != "" {
			part += " (" + p.Filter + ")"
		}
		parts = append(parts, part)
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}
