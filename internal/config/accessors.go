package config

import "time"

// Defaults for the settings whose zero value means "not set".
const (
	DefaultFSMode              = "read"
	DefaultIncomingMode        = "mirror"
	DefaultAgentStartupTimeout = 60 * time.Second
	DefaultAgentLinger         = 30 * time.Second
	DefaultAgentSessionGrace   = 60 * time.Second
	DefaultMirrorRate          = 1000
)

func boolOr(p *bool, def bool) bool {
	if p == nil {
		return def
	}
	return *p
}

// HostnameEnabled reports whether the local process sees the target's
// hostname (hostname; default true).
func (c *Config) HostnameEnabled() bool { return boolOr(c.Hostname, true) }

// EnvEnabled reports whether the local process gets the target's
// environment (env.enabled; default true).
func (c *Config) EnvEnabled() bool { return boolOr(c.Env.Enabled, true) }

// FSMode returns fs.mode: "local", "read" or "write" (default "read").
func (c *Config) FSMode() string {
	if c.FS.Mode == "" {
		return DefaultFSMode
	}
	return c.FS.Mode
}

// OutgoingTCP reports whether outgoing TCP goes through the target
// (outgoing.tcp; default true).
func (c *Config) OutgoingTCP() bool { return boolOr(c.Outgoing.TCP, true) }

// OutgoingUDP reports whether outgoing UDP goes through the target
// (outgoing.udp; default true).
func (c *Config) OutgoingUDP() bool { return boolOr(c.Outgoing.UDP, true) }

// IgnoreLocalhost reports whether loopback destinations stay local
// (outgoing.ignore_localhost; default true).
func (c *Config) IgnoreLocalhost() bool { return boolOr(c.Outgoing.IgnoreLocalhost, true) }

// DNSEnabled reports whether names are resolved as the target does
// (dns.enabled; default true).
func (c *Config) DNSEnabled() bool { return boolOr(c.DNS.Enabled, true) }

// IncomingMode returns incoming.mode: "mirror", "steal" or "off" (default
// "mirror").
func (c *Config) IncomingMode() string {
	if c.Incoming.Mode == "" {
		return DefaultIncomingMode
	}
	return c.Incoming.Mode
}

// MirrorRate returns incoming.mirror_rate: the requests per second and
// port copied in mirror mode (default DefaultMirrorRate; 0: no bound).
func (c *Config) MirrorRate() int {
	if c.Incoming.MirrorRate == nil {
		return DefaultMirrorRate
	}
	return *c.Incoming.MirrorRate
}

// IncomingReplicas returns incoming.replicas: "all" (default) or "one".
func (c *Config) IncomingReplicas() string {
	if c.Incoming.Replicas == "" {
		return ReplicaModes[0]
	}
	return c.Incoming.Replicas
}

// AgentStartupTimeout returns agent.startup_timeout (default 60s).
func (c *Config) AgentStartupTimeout() time.Duration {
	if c.Agent.StartupTimeout <= 0 {
		return DefaultAgentStartupTimeout
	}
	return time.Duration(c.Agent.StartupTimeout)
}

// AgentLinger returns agent.linger (default 30s).
func (c *Config) AgentLinger() time.Duration {
	if c.Agent.Linger <= 0 {
		return DefaultAgentLinger
	}
	return time.Duration(c.Agent.Linger)
}

// AgentTransport returns agent.transport (default auto).
func (c *Config) AgentTransport() string {
	if c.Agent.Transport == "" {
		return Transports[0]
	}
	return c.Agent.Transport
}

// AgentPerNode returns agent.per_node (default true).
func (c *Config) AgentPerNode() bool {
	return c.Agent.PerNode == nil || *c.Agent.PerNode
}

// OperatorEnabled returns operator (default true).
func (c *Config) OperatorEnabled() bool {
	return c.Operator == nil || *c.Operator
}

// AgentSessionGrace returns agent.session_grace (default 60s).
func (c *Config) AgentSessionGrace() time.Duration {
	if c.Agent.SessionGrace <= 0 {
		return DefaultAgentSessionGrace
	}
	return time.Duration(c.Agent.SessionGrace)
}
