package httpfilter

import (
	"net/textproto"
	"regexp/syntax"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// headerOf is the canonical name of the one header whose lines a header
// regex can match, when its syntax says so: it starts at the beginning
// of the line with a literal "name:" (any case under (?i): header names
// are case-insensitive, and requests' are canonical). "" when it can
// match lines of other headers, or cannot tell.
func headerOf(expr string) string {
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return ""
	}
	re = re.Simplify()
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 || re.Sub[0].Op != syntax.OpBeginText || re.Sub[1].Op != syntax.OpLiteral {
		return ""
	}
	// Under (?i) the parser keeps each letter's smallest fold: the ASCII
	// one where there is one (the Kelvin sign becomes K).
	lit := string(re.Sub[1].Rune)
	name, _, ok := strings.Cut(lit, ":")
	if !ok || !httpguts.ValidHeaderFieldName(name) {
		return ""
	}
	for i := 0; i < len(name); i++ {
		if name[i] >= 0x80 {
			return "" // matches no header name (they are ASCII)
		}
	}
	if re.Sub[1].Flags&syntax.FoldCase == 0 && textproto.CanonicalMIMEHeaderKey(name) != name {
		// Case-sensitive, and not the canonical spelling: it matches no
		// line (lines carry the canonical name), like the regex itself.
		return ""
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

// needsLines reports whether matching f reads the request's header lines
// (a header filter that is not limited to one header).
func needsLines(f *Filter) bool {
	switch f.kind {
	case kindHeader:
		return f.header == ""
	case kindAll, kindAny:
		for _, p := range f.parts {
			if needsLines(p) {
				return true
			}
		}
	}
	return false
}
