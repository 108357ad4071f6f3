package v1alpha1

import "github.com/tether-dev/tether/internal/policy"

// PolicyRulesOf is r as targets/policy shows it.
func PolicyRulesOf(r policy.Rules) PolicyRules {
	conv := func(in []policy.OutgoingRule) []PolicyOutgoingRule {
		var out []PolicyOutgoingRule
		for _, x := range in {
			out = append(out, PolicyOutgoingRule(x))
		}
		return out
	}
	return PolicyRules{Name: r.Name, Block: r.Block, RequireHeaderFilter: r.RequireHeaderFilter,
		EnvExclude: r.EnvExclude, EnvMask: r.EnvMask, FSReadOnly: r.FSReadOnly, FSLocal: r.FSLocal, FSNotFound: r.FSNotFound,
		OutgoingAllow: conv(r.OutgoingAllow), OutgoingBlock: conv(r.OutgoingBlock)}
}

// Rules are r as the policy package decides with them.
func (r PolicyRules) Rules() policy.Rules {
	conv := func(in []PolicyOutgoingRule) []policy.OutgoingRule {
		var out []policy.OutgoingRule
		for _, x := range in {
			out = append(out, policy.OutgoingRule(x))
		}
		return out
	}
	return policy.Rules{Name: r.Name, Block: r.Block, RequireHeaderFilter: r.RequireHeaderFilter,
		EnvExclude: r.EnvExclude, EnvMask: r.EnvMask, FSReadOnly: r.FSReadOnly, FSLocal: r.FSLocal, FSNotFound: r.FSNotFound,
		OutgoingAllow: conv(r.OutgoingAllow), OutgoingBlock: conv(r.OutgoingBlock)}
}
