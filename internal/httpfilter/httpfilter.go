// Package httpfilter compiles incoming.http_filter settings (header, path
// and method regexes, all_of / any_of) into matchers for HTTP requests,
// and tells whether two filters can match the same request.
package httpfilter

import (
	"fmt"
	"net/http"
	"regexp"
	"regexp/syntax"
	"sort"
	"strings"

	"github.com/tether-dev/tether/internal/config"
)

// Filter matches HTTP requests. The zero Filter (and nil) matches nothing.
type Filter struct {
	kind  kind
	re    *regexp.Regexp // header, path, method
	src   string
	parts []*Filter // all_of, any_of
	// header, for a header filter that only lines of one header can
	// match (its regex starts ^Name:): that header's canonical name. Only
	// its values are tried: a request without it costs a map lookup, not
	// a regex per header line (a port may have a hundred sessions).
	header string
}

type kind int

const (
	kindNone kind = iota
	kindHeader
	kindPath
	kindMethod
	kindAll
	kindAny
)

// Compile builds a Filter from config. It returns nil (and no error) when
// the config sets no filter. Regexes are case-insensitive for headers and
// methods (header names are case-insensitive in HTTP), case-sensitive for
// paths.
func Compile(c config.HTTPFilter) (*Filter, error) {
	var fs []*Filter
	add := func(key string, k kind, expr string) error {
		if expr == "" {
			return nil
		}
		f, err := leaf(key, k, expr)
		if err != nil {
			return err
		}
		fs = append(fs, f)
		return nil
	}
	if err := add("incoming.http_filter.header_filter", kindHeader, c.HeaderFilter); err != nil {
		return nil, err
	}
	if err := add("incoming.http_filter.path_filter", kindPath, c.PathFilter); err != nil {
		return nil, err
	}
	if err := add("incoming.http_filter.method_filter", kindMethod, c.MethodFilter); err != nil {
		return nil, err
	}
	for _, group := range []struct {
		key  string
		k    kind
		list []config.HTTPMatch
	}{{"all_of", kindAll, c.AllOf}, {"any_of", kindAny, c.AnyOf}} {
		if len(group.list) == 0 {
			continue
		}
		g := &Filter{kind: group.k}
		for i, m := range group.list {
			key := fmt.Sprintf("incoming.http_filter.%s[%d]", group.key, i)
			var f *Filter
			var err error
			switch {
			case m.Header != "":
				f, err = leaf(key+".header", kindHeader, m.Header)
			case m.Path != "":
				f, err = leaf(key+".path", kindPath, m.Path)
			case m.Method != "":
				f, err = leaf(key+".method", kindMethod, m.Method)
			default:
				err = fmt.Errorf("%s: set one of header, path or method", key)
			}
			if err != nil {
				return nil, err
			}
			g.parts = append(g.parts, f)
		}
		fs = append(fs, g)
	}
	switch len(fs) {
	case 0:
		return nil, nil
	case 1:
		return fs[0], nil
	}
	return &Filter{kind: kindAll, parts: fs}, nil
}

func leaf(key string, k kind, expr string) (*Filter, error) {
	src := expr
	if k != kindPath && !strings.HasPrefix(expr, "(?i)") {
		expr = "(?i)" + expr
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		return nil, fmt.Errorf("%s: bad regex %q: %w", key, src, err)
	}
	f := &Filter{kind: k, re: re, src: src}
	if k == kindHeader {
		f.header = headerOf(expr)
	}
	return f, nil
}

// String renders the filter for messages.
func (f *Filter) String() string {
	if f == nil {
		return "(no filter)"
	}
	switch f.kind {
	case kindHeader:
		return "header ~ " + f.src
	case kindPath:
		return "path ~ " + f.src
	case kindMethod:
		return "method ~ " + f.src
	case kindAll, kindAny:
		parts := make([]string, len(f.parts))
		for i, p := range f.parts {
			parts[i] = p.String()
		}
		sep := " and "
		if f.kind == kindAny {
			sep = " or "
		}
		return "(" + strings.Join(parts, sep) + ")"
	}
	return "(empty filter)"
}

// Request is what a filter sees of a request.
type Request struct {
	Method string
	Path   string // path, and path?query is tried too
	Query  string
	Header http.Header
	// lines are Header as "Name: value" lines, made at most once per
	// request (not once per filter: a port may have a hundred sessions'
	// filters), and only if a filter needs them.
	lines *lines
}

// FromHTTP adapts an *http.Request.
func FromHTTP(r *http.Request) Request {
	return NewRequest(r.Method, r.URL.Path, r.URL.RawQuery, r.Header)
}

// NewRequest is a request to match against many filters: its header
// lines are made once here, not once per filter. path is decoded (as
// net/http's URL.Path), query raw.
func NewRequest(method, path, query string, h http.Header) Request {
	return Request{Method: method, Path: path, Query: query, Header: h, lines: &lines{}}
}

// lines caches a request's header lines.
type lines struct {
	made bool
	l    []string
}

// headerLines are r's header lines, made once.
func (r *Request) headerLines() []string {
	if r.lines == nil {
		r.lines = &lines{}
	}
	if !r.lines.made {
		r.lines.l, r.lines.made = headerLines(r.Header), true
	}
	return r.lines.l
}

func headerLines(h http.Header) []string {
	n := 0
	for _, vals := range h {
		n += len(vals)
	}
	lines := make([]string, 0, n)
	for name, vals := range h {
		for _, v := range vals {
			lines = append(lines, name+": "+v)
		}
	}
	return lines
}

// Match reports whether the request matches. Header filters are matched
// against each "Name: value" line (canonical name), as mirrord does.
func (f *Filter) Match(r Request) bool {
	if f == nil {
		return false
	}
	if r.lines == nil && needsLines(f) {
		r.lines = &lines{} // once, for all the parts too
	}
	switch f.kind {
	case kindHeader:
		if f.header != "" {
			for _, v := range r.Header[f.header] {
				if f.re.MatchString(f.header + ": " + v) {
					return true
				}
			}
			return false
		}
		for _, l := range r.headerLines() {
			if f.re.MatchString(l) {
				return true
			}
		}
		return false
	case kindPath:
		if f.re.MatchString(r.Path) {
			return true
		}
		return r.Query != "" && f.re.MatchString(r.Path+"?"+r.Query)
	case kindMethod:
		return f.re.MatchString(r.Method)
	case kindAll:
		for _, p := range f.parts {
			if !p.Match(r) {
				return false
			}
		}
		return len(f.parts) > 0
	case kindAny:
		for _, p := range f.parts {
			if p.Match(r) {
				return true
			}
		}
	}
	return false
}

// Overlaps reports whether some request can match both filters, by
// building example requests from each filter's regexes and trying them on
// the other. It finds the overlaps that matter in practice (the same
// header value, a regex alternative naming the other's value, a catch-all)
// and is deterministic; it can miss exotic overlaps, which the agent then
// reports when a real request matches both.
func Overlaps(a, b *Filter) bool {
	if a == nil || b == nil {
		return false
	}
	for _, r := range b.Examples() {
		if a.Match(r) {
			return true
		}
	}
	for _, r := range a.Examples() {
		if b.Match(r) {
			return true
		}
	}
	return false
}

// Examples returns requests that the filter matches (as far as the
// example generator can tell), one per alternative branch.
func (f *Filter) Examples() []Request {
	if f == nil {
		return nil
	}
	base := Request{Method: "GET", Path: "/", Header: http.Header{}}
	switch f.kind {
	case kindHeader, kindPath, kindMethod:
		var out []Request
		for _, s := range examplesOf(f.re) {
			r := cloneReq(base)
			if applyExample(&r, f.kind, s) {
				out = append(out, r)
			}
		}
		return out
	case kindAny:
		var out []Request
		for _, p := range f.parts {
			out = append(out, p.Examples()...)
		}
		return out
	case kindAll:
		// Combine the first example of each part into one request.
		r := cloneReq(base)
		for _, p := range f.parts {
			ex := p.Examples()
			if len(ex) == 0 {
				return nil
			}
			merge(&r, ex[0])
		}
		return []Request{r}
	}
	return nil
}

func cloneReq(r Request) Request {
	r.Header = r.Header.Clone()
	return r
}

func merge(dst *Request, src Request) {
	if src.Method != "GET" {
		dst.Method = src.Method
	}
	if src.Path != "/" {
		dst.Path = src.Path
	}
	for k, v := range src.Header {
		dst.Header[k] = append(dst.Header[k], v...)
	}
}

func applyExample(r *Request, k kind, s string) bool {
	switch k {
	case kindHeader:
		name, val, ok := strings.Cut(s, ":")
		name = strings.TrimSpace(name)
		if !ok || name == "" {
			return false
		}
		r.Header.Add(name, strings.TrimSpace(val))
	case kindPath:
		if !strings.HasPrefix(s, "/") {
			s = "/" + s
		}
		r.Path = s
	case kindMethod:
		r.Method = strings.ToUpper(s)
	}
	return true
}

// examplesOf generates short strings matched by re: one per top-level
// alternative, then keeps those the regex really matches.
func examplesOf(re *regexp.Regexp) []string {
	prog, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return nil
	}
	prog = prog.Simplify()
	var cands []string
	if prog.Op == syntax.OpAlternate {
		for _, sub := range prog.Sub {
			cands = append(cands, gen(sub))
		}
	} else {
		cands = append(cands, gen(prog))
	}
	seen := map[string]bool{}
	var out []string
	for _, c := range cands {
		if !seen[c] && re.MatchString(c) {
			seen[c] = true
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

// gen returns a short string matched by the regex tree (best effort).
func gen(re *syntax.Regexp) string {
	switch re.Op {
	case syntax.OpLiteral:
		return string(re.Rune)
	case syntax.OpCharClass:
		if len(re.Rune) >= 2 {
			// Prefer a letter or digit from the class when it has one.
			for i := 0; i+1 < len(re.Rune); i += 2 {
				for c := re.Rune[i]; c <= re.Rune[i+1] && c < re.Rune[i]+128; c++ {
					if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' {
						return string(c)
					}
				}
			}
			return string(re.Rune[0])
		}
		return ""
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return "x"
	case syntax.OpCapture:
		return gen(re.Sub[0])
	case syntax.OpConcat:
		var b strings.Builder
		for _, s := range re.Sub {
			b.WriteString(gen(s))
		}
		return b.String()
	case syntax.OpAlternate:
		return gen(re.Sub[0])
	case syntax.OpPlus:
		return gen(re.Sub[0])
	case syntax.OpRepeat:
		var b strings.Builder
		for range re.Min {
			b.WriteString(gen(re.Sub[0]))
		}
		return b.String()
	}
	return "" // star, quest, empty, anchors, word boundaries
}
