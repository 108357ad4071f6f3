package config

import "time"

// Config is the whole of a tether config file. Key names follow mirrord's
// `feature.*` tree, flattened one level (mirrord's `feature.network.outgoing`
// is tether's `outgoing`), so mirrord users recognise every knob.
type Config struct {
	// Target is what to run against: a path ("targetless",
	// "pod/NAME[/container/C]", "deployment/NAME", "service/NAME"...) or
	// a label selector. Written as a string, it is the path. Ignored when
	// an agent address is given directly.
	Target Target `json:"target,omitzero" jsonschema_description:"What to run against: a string (targetless, pod/NAME[/container/C], deployment/NAME, service/NAME, ...) or {path, selector}. Ignored when agent.address is set."`
	// Namespace of the target (Kubernetes).
	Namespace string `json:"namespace,omitempty" jsonschema_description:"Kubernetes namespace of the target."`
	// FollowOwner: with a pod target, when the pod goes away, re-attach to
	// the new pod of its owner (Deployment, StatefulSet, DaemonSet, Job...),
	// as a deployment/NAME target does. Same as --follow-owner.
	FollowOwner bool `json:"follow_owner,omitempty" jsonschema_description:"With a pod target (pod/NAME): when the pod goes away (deleted, ended), re-attach to the new pod of its owner (Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, Argo Rollout) as a workload target does. Off: the session ends with exit code 69. A pod without an owner is refused. Same as --follow-owner."`

	// Operator: sessions go through tether-operator when the cluster has
	// it (default true); false starts the agents with the user's own
	// rights, as without it. Same as --no-operator (false).
	Operator *bool `json:"operator,omitempty" jsonschema:"default=true" jsonschema_description:"Go through tether-operator when the cluster has it: the operator starts the agents and checks RBAC on targets.tether.dev, so no right to create privileged pods or to port-forward is needed. false: tether starts the agents itself with your rights, as on a cluster without the operator. Same as --no-operator."`

	Agent    Agent    `json:"agent,omitzero" jsonschema_description:"How tether reaches (or creates) the agent."`
	Env      Env      `json:"env,omitzero" jsonschema_description:"Which of the target's environment variables the local process gets."`
	FS       FS       `json:"fs,omitzero" jsonschema_description:"File system mode and path lists."`
	Outgoing Outgoing `json:"outgoing,omitzero" jsonschema_description:"Which outgoing connections are made from the target."`
	DNS      DNS      `json:"dns,omitzero" jsonschema_description:"Name resolution."`
	Incoming Incoming `json:"incoming,omitzero" jsonschema_description:"Traffic to the target's ports (mirror or steal)."`
	// SplitQueues are the queues of the target whose messages this session
	// takes, by the queue IDs of the target's QueueSplit (tether-operator).
	SplitQueues map[string]SplitQueue `json:"split_queues,omitempty" jsonschema_description:"Queue splitting (through tether-operator): by queue ID of the target's QueueSplit, the messages this session's program gets on a queue of its own; the deployed workload gets the others. Each needs a message_filter."`
	// Hostname makes gethostname/uname/os.Hostname report the target's hostname (default true).
	Hostname *bool `json:"hostname,omitempty" jsonschema:"default=true" jsonschema_description:"Make gethostname/uname/os.Hostname report the target's hostname."`
}

// Target is what a session runs against: Path (KIND/NAME...) or the pods a
// label Selector picks, at most one of them.
type Target struct {
	Path string `json:"path,omitempty" jsonschema_description:"targetless, pod/NAME[/container/C], deployment/NAME, statefulset/NAME, replicaset/NAME, job/NAME, cronjob/NAME, rollout/NAME or service/NAME."`
	// Selector picks pods by label (app=web,tier!=db), as kubectl -l does.
	Selector string `json:"selector,omitempty" jsonschema_description:"A label selector (app=web,tier in (api)): its ready pods are the target, as a workload's are. Cannot be used with path. Same as --selector/-l."`
}

// IsZero reports whether no target is set.
func (t Target) IsZero() bool { return t.Path == "" && t.Selector == "" }

// Agent configures how tether reaches (or creates) the agent.
type Agent struct {
	// Address of an agent started by other means (host:port). Same as --agent-addr.
	Address string `json:"address,omitempty" jsonschema_description:"Address (host:port) of an agent started by other means; same as --agent-addr."`
	// Image of the agent container (Kubernetes).
	Image string `json:"image,omitempty" jsonschema_description:"Image of the agent container (Kubernetes)."`
	// StartupTimeout is how long to wait for the agent to be ready, e.g. "60s".
	StartupTimeout Duration `json:"startup_timeout,omitempty" jsonschema_extras:"default=60s" jsonschema_description:"How long to wait for the agent to be ready: a Go duration such as \"60s\" or a number of seconds."`
	// Linger is how long an agent stays after its last session, e.g. "30s".
	Linger Duration `json:"linger,omitempty" jsonschema_extras:"default=30s" jsonschema_description:"How long an agent stays after its last session: a Go duration such as \"30s\" or a number of seconds."`
	// SessionGrace is how long an agent keeps a session whose connection
	// died (subscriptions included) for tether to reconnect, e.g. "60s".
	SessionGrace Duration `json:"session_grace,omitempty" jsonschema_extras:"default=60s" jsonschema_description:"How long the agent keeps a session whose connection died (a tunnel drop, a laptop asleep), with its subscriptions, for tether to reconnect and resume it: a Go duration or a number of seconds."`
	// MemoryLimit is the agent container's memory limit (Kubernetes quantity).
	MemoryLimit string `json:"memory_limit,omitempty" jsonschema_description:"Memory limit of the agent container, a Kubernetes quantity such as \"128Mi\" (default: none)."`
	// PerNode shares one agent among the target pods of a namespace on a node.
	// Transport is how tether reaches its agents: auto, port-forward or direct.
	Transport string `json:"transport,omitempty" jsonschema:"enum=auto,enum=port-forward,enum=direct,default=auto" jsonschema_description:"How tether reaches its agents: port-forward (through the API server, from anywhere); direct (to the agent pod's IP, in TLS keyed by the agent's token, for tether running inside the cluster: a CI runner pod, a dev container); auto: direct when tether runs in a pod and the agent answers there, else port-forward."`
	PerNode   *bool  `json:"per_node,omitempty" jsonschema:"default=true" jsonschema_description:"One agent per node (and namespace) serves every target pod there, the replicas of a workload included, so that a session on many replicas starts as fast as on one; false: an agent per pod. Ephemeral agents (--ephemeral) are always per pod."`
}

// Env selects which of the target's environment variables the local process gets.
type Env struct {
	// Enabled turns remote environment on (default true).
	Enabled *bool `json:"enabled,omitempty" jsonschema:"default=true" jsonschema_description:"Give the local process the target's environment."`
	// Include lists the only remote variables to take (wildcards * and ?). Excludes Exclude.
	Include []string `json:"include,omitempty" jsonschema_description:"The only remote variables to take (wildcards * and ?). Cannot be used with exclude."`
	// Exclude lists remote variables not to take (wildcards * and ?), on top of the built-in list.
	Exclude []string `json:"exclude,omitempty" jsonschema_description:"Remote variables not to take (wildcards * and ?), on top of the built-in list. Cannot be used with include."`
	// Override sets variables to fixed values (wins over remote and local).
	Override map[string]string `json:"override,omitempty" jsonschema_description:"Variables set to fixed values (win over remote and local values)."`
	// Unset removes variables from the final environment.
	Unset []string `json:"unset,omitempty" jsonschema_description:"Variables removed from the final environment."`
	// EnvFile is a dotenv file whose values override remote ones.
	EnvFile string `json:"env_file,omitempty" jsonschema_description:"Dotenv file (KEY=VALUE lines) whose values override remote ones; relative to the current directory."`
}

// FS is the file system mode and path lists (regexes matched against absolute paths).
type FS struct {
	// Mode is local | read (default) | write.
	Mode string `json:"mode,omitempty" jsonschema:"enum=local,enum=read,enum=write,default=read" jsonschema_description:"local: all files are local; read: read remote files, write locally; write: read and write remote files."`
	// ReadOnly, ReadWrite, Local and NotFound are regexes matched against
	// absolute paths; they override Mode for the paths they match.
	ReadOnly  []string `json:"read_only,omitempty" jsonschema_description:"Regexes of paths read from the target, never written there."`
	ReadWrite []string `json:"read_write,omitempty" jsonschema_description:"Regexes of paths read from and written to the target."`
	Local     []string `json:"local,omitempty" jsonschema_description:"Regexes of paths always opened locally."`
	NotFound  []string `json:"not_found,omitempty" jsonschema_description:"Regexes of paths that do not exist (open fails with ENOENT)."`
}

// Outgoing chooses which outgoing connections are made from the target.
type Outgoing struct {
	// TCP and UDP enable each protocol (default true).
	TCP *bool `json:"tcp,omitempty" jsonschema:"default=true" jsonschema_description:"Make outgoing TCP connections from the target."`
	UDP *bool `json:"udp,omitempty" jsonschema:"default=true" jsonschema_description:"Send outgoing UDP traffic from the target."`
	// IgnoreLocalhost keeps loopback destinations local (default true).
	IgnoreLocalhost *bool `json:"ignore_localhost,omitempty" jsonschema:"default=true" jsonschema_description:"Keep loopback destinations local."`
	// Filter: at most one of Local / Remote. Entries are
	// "[tcp://|udp://][host|ip|cidr][:port]"; see ParseOutgoingFilter.
	Filter OutgoingFilter `json:"filter,omitzero" jsonschema_description:"Destinations that go local or remote (at most one of the two lists)."`
}

// OutgoingFilter lists destinations that go local or remote; the rest go the other way.
type OutgoingFilter struct {
	Local  []string `json:"local,omitempty" jsonschema_description:"Destinations connected from this machine; all others go through the target. Entries: [tcp://|udp://][host|*.domain|ip|cidr][:port]."`
	Remote []string `json:"remote,omitempty" jsonschema_description:"Destinations connected from the target; all others stay local. Entries: [tcp://|udp://][host|*.domain|ip|cidr][:port]."`
}

// DNS configures name resolution.
type DNS struct {
	// Enabled resolves names as the target does (default true).
	Enabled *bool `json:"enabled,omitempty" jsonschema:"default=true" jsonschema_description:"Resolve names as the target does."`
	// Filter keeps names local or remote. Entries are host names (suffix match
	// with a leading dot, e.g. ".example.com"), or regexes prefixed with "re:".
	Filter DNSFilter `json:"filter,omitzero" jsonschema_description:"Names resolved locally or remotely (at most one of the two lists)."`
}

// DNSFilter lists names resolved locally or remotely: at most one of Local / Remote.
type DNSFilter struct {
	Local  []string `json:"local,omitempty" jsonschema_description:"Names resolved locally; the rest remotely. Entries: host names (a leading dot matches subdomains) or regexes prefixed with re:."`
	Remote []string `json:"remote,omitempty" jsonschema_description:"Names resolved remotely; the rest locally. Entries: host names (a leading dot matches subdomains) or regexes prefixed with re:."`
}

// Incoming configures traffic to the target's ports (mirror / steal).
type Incoming struct {
	// Mode is mirror (default) | steal | off.
	Mode       string     `json:"mode,omitempty" jsonschema:"enum=mirror,enum=steal,enum=off,default=mirror" jsonschema_description:"mirror: copy incoming traffic to the local process; steal: take it away from the target; off: no incoming traffic."`
	HTTPFilter HTTPFilter `json:"http_filter,omitzero" jsonschema_description:"Only HTTP requests matching this filter are stolen."`
	// Ports: only these remote ports are subscribed. Excludes IgnorePorts.
	Ports []uint16 `json:"ports,omitempty" jsonschema_description:"The only remote ports subscribed to. Cannot be used with ignore_ports."`
	// IgnorePorts are remote ports not subscribed to. Excludes Ports.
	IgnorePorts []uint16 `json:"ignore_ports,omitempty" jsonschema_description:"Remote ports not subscribed to. Cannot be used with ports."`
	// PortMapping is a list of [local, remote] pairs.
	PortMapping [][2]uint16 `json:"port_mapping,omitempty" jsonschema_description:"[local, remote] pairs: traffic to the remote port goes to the local one."`
	// ListenPorts is a list of [remote, local] pairs: bind local instead of remote.
	ListenPorts [][2]uint16 `json:"listen_ports,omitempty" jsonschema_description:"[remote, local] pairs: a local listen on the remote port binds the local port instead."`
	// Replicas is all (default: every ready pod of a workload target gets
	// the subscriptions) or one (only the pod the session runs in).
	Replicas string `json:"replicas,omitempty" jsonschema:"enum=all,enum=one,default=all" jsonschema_description:"For a workload target (deployment, statefulset, replicaset, rollout): all subscribes on every ready pod, following scaling and rollouts; one only on the pod whose context the session has."`
	// Loopback also subscribes listeners bound to a loopback address
	// (default false: those are the developer's own tools, a debugger's or
	// a profiler's port, and stay local).
	Loopback bool `json:"loopback,omitempty" jsonschema_description:"Also give the target's traffic to listeners bound to a loopback address (127.0.0.1, ::1). Off by default: those are local tools such as a debugger's port."`
	// MirrorRate bounds the requests (connections, for other protocols)
	// copied to the session per second and port in mirror mode; the rest
	// are left out and counted. 0: no bound.
	MirrorRate *int `json:"mirror_rate,omitempty" jsonschema:"default=1000,minimum=0" jsonschema_description:"mirror mode: at most this many requests per second and port are copied to the local process (the rest are left out and counted, so a busy port does not flood it or the tunnel); 0 copies every request the session keeps up with."`
}

// HTTPFilter selects the requests a stealing session takes (regexes). At
// most one of HeaderFilter, PathFilter, MethodFilter, AllOf and AnyOf is set.
type HTTPFilter struct {
	HeaderFilter string      `json:"header_filter,omitempty" jsonschema_description:"Regex matched against each \"Name: value\" request header."`
	PathFilter   string      `json:"path_filter,omitempty" jsonschema_description:"Regex matched against the request path."`
	MethodFilter string      `json:"method_filter,omitempty" jsonschema_description:"Regex matched against the request method."`
	AllOf        []HTTPMatch `json:"all_of,omitempty" jsonschema_description:"Requests matching all of these."`
	AnyOf        []HTTPMatch `json:"any_of,omitempty" jsonschema_description:"Requests matching any of these."`
	Ports        []uint16    `json:"ports,omitempty" jsonschema_description:"Ports the HTTP filter applies to."`
}

// HTTPMatch is one element of all_of / any_of: exactly one field set.
type HTTPMatch struct {
	Header string `json:"header,omitempty" jsonschema_description:"Regex matched against each \"Name: value\" request header."`
	Path   string `json:"path,omitempty" jsonschema_description:"Regex matched against the request path."`
	Method string `json:"method,omitempty" jsonschema_description:"Regex matched against the request method."`
}

// Duration is a time.Duration written in config files as a Go duration
// string ("30s", "1m30s") or as a whole number of seconds (30). It marshals
// to JSON, YAML and text as a duration string.
type Duration time.Duration

// SplitQueue is one queue a session splits.
type SplitQueue struct {
	// MessageFilter is header (Kafka), property or header (RabbitMQ) or
	// message attribute (SQS) → regular expression; a message is the
	// session's when every one matches.
	MessageFilter map[string]string `json:"message_filter,omitempty" jsonschema_description:"Header (Kafka), header or property (RabbitMQ) or message attribute (SQS) name, to a regular expression (Go RE2) its value must match; a message goes to this session when all match, else to the deployed workload (or an earlier session whose filter matches)."`
}
