package httpfilter

import (
	"fmt"
	"strings"

	"github.com/tether-dev/tether/internal/config"
	"github.com/tether-dev/tether/internal/policy"
	"github.com/tether-dev/tether/internal/protocol"
)

// ToWire converts a config filter for the subscribe request (nil when unset).
func ToWire(c config.HTTPFilter) *protocol.HTTPFilter {
	w := &protocol.HTTPFilter{Header: c.HeaderFilter, Path: c.PathFilter, Method: c.MethodFilter}
	for _, m := range c.AllOf {
		w.AllOf = append(w.AllOf, protocol.HTTPMatch(m))
	}
	for _, m := range c.AnyOf {
		w.AnyOf = append(w.AnyOf, protocol.HTTPMatch(m))
	}
	if w.Header == "" && w.Path == "" && w.Method == "" && len(w.AllOf) == 0 && len(w.AnyOf) == 0 {
		return nil
	}
	return w
}

// CompileWire compiles a filter received in a subscribe request.
func CompileWire(w *protocol.HTTPFilter) (*Filter, error) {
	if w == nil {
		return nil, nil
	}
	c := config.HTTPFilter{HeaderFilter: w.Header, PathFilter: w.Path, MethodFilter: w.Method}
	for _, m := range w.AllOf {
		c.AllOf = append(c.AllOf, config.HTTPMatch(m))
	}
	for _, m := range w.AnyOf {
		c.AnyOf = append(c.AnyOf, config.HTTPMatch(m))
	}
	return Compile(c)
}

// PolicyView is what policies see of a steal's HTTP filter (nil:
// none): the headers a stolen request must carry.
func PolicyView(f *protocol.HTTPFilter) *policy.HTTPFilter {
	if f == nil {
		return nil
	}
	out := &policy.HTTPFilter{All: []string{f.Header}}
	var text []string
	if f.Header != "" {
		text = append(text, "header "+f.Header)
	}
	if f.Path != "" {
		text = append(text, "path "+f.Path)
	}
	for _, m := range f.AllOf {
		out.All = append(out.All, m.Header)
		if m.Header != "" {
			text = append(text, "header "+m.Header)
		}
	}
	for _, m := range f.AnyOf {
		out.AnyOf = append(out.AnyOf, m.Header)
	}
	if len(f.AnyOf) > 0 {
		text = append(text, fmt.Sprintf("any of %d", len(f.AnyOf)))
	}
	out.Text = "(" + strings.Join(text, ", ") + ")"
	return out
}
