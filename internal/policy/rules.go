package policy

import "slices"

// Rules are what one policy says of the sessions it selects, as
// tether-operator hands them to an agent (protocol.Grant) and to `tether
// policy check`: a PolicySpec without its selection.
type Rules struct {
	// Name is how messages name the policy: "ClusterPolicy
	// no-unfiltered-steal", "Policy shop/require-user".
	Name                string         `json:"name"`
	Block               []string       `json:"block,omitempty"`
	RequireHeaderFilter string         `json:"requireHeaderFilter,omitempty"`
	EnvExclude          []string       `json:"envExclude,omitempty"`
	EnvMask             []string       `json:"envMask,omitempty"`
	FSReadOnly          []string       `json:"fsReadOnly,omitempty"`
	FSLocal             []string       `json:"fsLocal,omitempty"`
	FSNotFound          []string       `json:"fsNotFound,omitempty"`
	OutgoingAllow       []OutgoingRule `json:"outgoingAllow,omitempty"`
	OutgoingBlock       []OutgoingRule `json:"outgoingBlock,omitempty"`
}

// OutgoingRule matches a connection by where it goes: every field set
// must match (the API's OutgoingRule documents each).
type OutgoingRule struct {
	CIDR     string   `json:"cidr,omitempty"`
	Except   []string `json:"except,omitempty"`
	Hostname string   `json:"hostname,omitempty"`
	Port     int32    `json:"port,omitempty"`
	Protocol string   `json:"protocol,omitempty"`
}

// The features a policy can block (spec.block).
const (
	BlockSteal              = "steal"
	BlockStealWithoutFilter = "steal-without-filter"
	BlockMirror             = "mirror"
	BlockOutgoing           = "outgoing"
	BlockIncoming           = "incoming"
	BlockFSWrite            = "fs-write"
	BlockQueueSplit         = "queue-split"
	BlockCopyTarget         = "copy-target"
)

// Features are the blockable features, in the order docs list them.
var Features = []string{BlockSteal, BlockStealWithoutFilter, BlockMirror, BlockOutgoing, BlockIncoming, BlockFSWrite, BlockQueueSplit, BlockCopyTarget}

// Blockable reports whether f is a feature spec.block can name.
func Blockable(f string) bool { return slices.Contains(Features, f) }

// HasHostnameRules reports whether any of rs's outgoing rules matches
// on a hostname: the agent then needs the names of addresses.
func HasHostnameRules(rs []Rules) bool {
	for _, r := range rs {
		for _, o := range append(slices.Clone(r.OutgoingAllow), r.OutgoingBlock...) {
			if o.Hostname != "" {
				return true
			}
		}
	}
	return false
}
