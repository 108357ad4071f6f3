package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Error is one problem found in a config: where it is and what is wrong.
//
// Its message has the form
//
//	FILE:LINE:COLUMN: "KEY.PATH": what is wrong (and what to do)
//
// with the parts that are not known left out: File is empty for a Config
// that was not read from a file (Validate), Line and Column are 0 for a value
// that is not in the file, Path is empty for syntax errors. Unknown keys read
// `unknown key "fs.mdoe" (did you mean "fs.mode"?)`.
//
// Load and Validate return a single *Error, or several joined with
// errors.Join (one per line); use errors.As to get at the first.
type Error struct {
	File   string // config file name as given to Load; "" when not known
	Line   int    // 1-based line; 0 when not known
	Column int    // 1-based column (in characters); 0 when not known
	Path   string // key path such as "incoming.ports[1]"; "" for syntax errors
	Msg    string // what is wrong

	// pathInMsg is set when Msg already names Path (unknown keys).
	pathInMsg bool
	// onKey is set when the error is about the key rather than its value
	// (conflicting options): Load then points at the key.
	onKey bool
}

// Error implements error.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
	}
	if e.Line > 0 {
		if b.Len() == 0 {
			b.WriteString("line ")
		} else {
			b.WriteByte(':')
		}
		b.WriteString(strconv.Itoa(e.Line))
		if e.Column > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Column))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Path != "" && !e.pathInMsg {
		b.WriteString(strconv.Quote(e.Path))
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// maxErrors caps how many problems one Load reports.
const maxErrors = 20

// joinErrors sorts errs by position and returns nil, the only error, or all
// of them joined (capped at maxErrors).
func joinErrors(errs []*Error) error {
	if len(errs) == 0 {
		return nil
	}
	slices.SortStableFunc(errs, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	if len(errs) == 1 {
		return errs[0]
	}
	n := min(len(errs), maxErrors)
	out := make([]error, 0, n+1)
	for _, e := range errs[:n] {
		out = append(out, e)
	}
	if len(errs) > n {
		out = append(out, fmt.Errorf("... and %d more problems", len(errs)-n))
	}
	return errors.Join(out...)
}

// pos is a 1-based line and column in a file; the zero pos is "unknown".
type pos struct{ line, col int }

// lineCol returns the 1-based line and column (counted in characters) of the
// byte at offset off in data. Offsets past the end give the end position.
func lineCol(data []byte, off int) pos {
	off = max(0, min(off, len(data)))
	p := pos{line: 1, col: 1}
	lineStart := 0
	for i := 0; i < off; i++ {
		if data[i] == '\n' {
			p.line++
			lineStart = i + 1
		}
	}
	p.col = 1 + countRunes(data[lineStart:off])
	return p
}

// byteColToRuneCol converts a 1-based byte column on a 1-based line of data
// to a character column.
func byteColToRuneCol(data []byte, line, col int) int {
	start := 0
	for l := 1; l < line; l++ {
		i := indexByteFrom(data, start, '\n')
		if i < 0 {
			return col
		}
		start = i + 1
	}
	end := min(start+col-1, len(data))
	if end < start {
		return col
	}
	return 1 + countRunes(data[start:end])
}

func indexByteFrom(b []byte, from int, c byte) int {
	for i := from; i < len(b); i++ {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// countRunes counts UTF-8 characters, each invalid byte counting as one.
func countRunes(b []byte) int {
	n := 0
	for _, c := range b {
		if c&0xC0 != 0x80 {
			n++
		}
	}
	return n
}

// joinKey appends a map key to a key path: "fs" + "mode" is "fs.mode"; keys
// that are not plain identifiers are quoted: env.override["A.B"].
func joinKey(path, key string) string {
	if !isPlainKey(key) {
		return path + "[" + strconv.Quote(key) + "]"
	}
	if path == "" {
		return key
	}
	return path + "." + key
}

// joinIndex appends a list index to a key path: "incoming.ports[1]".
func joinIndex(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func isPlainKey(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// parentPath strips the last element of a key path: "a.b[1]" gives "a.b",
// "a.b" gives "a", "a" gives "".
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			// A quoted key may itself contain '['; find the '[' that starts
			// the last element by trying each candidate from the right.
			for j := i; j >= 0; j = strings.LastIndexByte(p[:j], '[') {
				tail := p[j+1 : len(p)-1]
				if _, err := strconv.Atoi(tail); err == nil {
					return p[:j]
				}
				if _, err := strconv.Unquote(tail); err == nil {
					return p[:j]
				}
				if j == 0 {
					break
				}
			}
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

// quoteValue quotes a string for an error message, shortening long ones.
func quoteValue(s string) string {
	const max = 60
	if len(s) > max {
		r := []rune(s)
		if len(r) > max {
			return strconv.Quote(string(r[:max])) + "..."
		}
	}
	return strconv.Quote(s)
}

// normKey folds case and drops '_' and '-' so that "ignoreLocalhost",
// "ignore-localhost" and "ignore_localhost" compare equal.
func normKey(s string) string {
	s = strings.ToLower(s)
	return strings.NewReplacer("_", "", "-", "").Replace(s)
}

// editDistance is the optimal string alignment distance (Levenshtein plus
// transpositions of adjacent characters) between a and b.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		return max(len(ra), len(rb))
	}
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// closest returns the candidate closest to s, or "" when none is close
// enough to be a plausible typo.
func closest(s string, candidates []string) string {
	ns := normKey(s)
	best, bestD := "", -1
	for _, c := range candidates {
		nc := normKey(c)
		d := editDistance(ns, nc)
		if d == 0 {
			return c
		}
		limit := 1
		switch {
		case len(nc) > 8:
			limit = 3
		case len(nc) > 4:
			limit = 2
		}
		if d <= limit && (bestD < 0 || d < bestD) {
			best, bestD = c, d
		}
	}
	return best
}

// orList renders ["a", "b", "c"] as `"a", "b" or "c"`.
func orList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	if len(q) <= 1 {
		return strings.Join(q, "")
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
