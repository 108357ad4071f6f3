package queue

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// Filter is a session's message filter: every header it names must be on
// the message, with a value the header's regular expression matches.
type Filter map[string]*regexp.Regexp

// ParseFilter compiles a filter of header → regular expression (a
// session's message_filter). An empty filter is refused: it would take
// every message from the deployed workload.
func ParseFilter(spec map[string]string) (Filter, error) {
	if len(spec) == 0 {
		return nil, fmt.Errorf("an empty message_filter would take every message from the deployed workload: name at least one header and a regular expression for its value")
	}
	f := Filter{}
	for _, k := range slices.Sorted(maps.Keys(spec)) {
		if strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("message_filter has an empty header name")
		}
		re, err := regexp.Compile(spec[k])
		if err != nil {
			return nil, fmt.Errorf("message_filter %q: %q is not a regular expression (Go RE2 syntax): %w", k, spec[k], err)
		}
		f[k] = re
	}
	return f, nil
}

// Match says whether m has every header of f, each with a value f's
// expression for it matches.
func (f Filter) Match(m *Message) bool {
	if len(f) == 0 {
		return false
	}
	for k, re := range f {
		v, ok := m.Header(k)
		if !ok || !re.MatchString(v) {
			return false
		}
	}
	return true
}

// String is f as HEADER=REGEX pairs, sorted.
func (f Filter) String() string {
	var parts []string
	for k, re := range f {
		parts = append(parts, k+"="+re.String())
	}
	slices.Sort(parts)
	return strings.Join(parts, ", ")
}
