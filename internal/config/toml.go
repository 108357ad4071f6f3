package config

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// parseTOML parses a TOML document into a node tree. go-toml decodes the
// document into generic maps (and checks all of TOML's rules: duplicate keys,
// table redefinitions...); a second pass over go-toml's AST records where
// each key path is, since generic maps have no positions.
func parseTOML(data []byte) (root *node, perr *Error) {
	defer func() {
		// The TOML library is not ours; never let a panic in it escape.
		if r := recover(); r != nil {
			root, perr = nil, &Error{Msg: fmt.Sprintf("TOML parser failed: %v", r)}
		}
	}()
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			msg := strings.TrimPrefix(de.Error(), "toml: ")
			return nil, &Error{Line: line, Column: byteColToRuneCol(data, line, col),
				Msg: "TOML syntax error: " + msg + tomlSyntaxHint(msg)}
		}
		return nil, &Error{Msg: "TOML syntax error: " + strings.TrimPrefix(err.Error(), "toml: ")}
	}
	t := &tomlPositions{data: data, locs: map[string]locs{}, arrays: map[string]int{}}
	t.scan()
	return t.node(doc, "", pos{1, 1}), nil
}

// tomlSyntaxHint explains common mistakes behind a TOML syntax error.
func tomlSyntaxHint(msg string) string {
	switch {
	case strings.Contains(msg, "at start of value"):
		return ` (strings take quotes: mode = "read")`
	case strings.Contains(msg, "already defined"):
		return " (keep one of them)"
	case strings.Contains(msg, "already exists"):
		return " (put all its keys under one table header)"
	}
	return ""
}

// tomlPositions maps key paths (as joinKey/joinIndex build them) to where
// their keys and values are in a TOML document.
type tomlPositions struct {
	data   []byte
	p      unstable.Parser
	locs   map[string]locs
	arrays map[string]int // array-of-tables path -> elements so far
}

func (t *tomlPositions) at(r unstable.Range) pos {
	return lineCol(t.data, int(r.Offset))
}

func (t *tomlPositions) note(path string, key, val pos) {
	l, ok := t.locs[path]
	if !ok {
		t.locs[path] = locs{key: key, val: val}
		return
	}
	if l.key == (pos{}) {
		l.key = key
	}
	if l.val == (pos{}) {
		l.val = val
	}
	t.locs[path] = l
}

// resolve walks a dotted key from base, noting each part's position, and
// returns the resulting path. A part naming an array of tables continues
// into its last element, as TOML does.
func (t *tomlPositions) resolve(base string, it unstable.Iterator, last bool) (path string, lastKey pos) {
	path = base
	for it.Next() {
		k := it.Node()
		kp := t.at(k.Raw)
		path = joinKey(path, string(k.Data))
		t.note(path, kp, kp)
		lastKey = kp
		if n, ok := t.arrays[path]; ok && n > 0 && !(last && it.IsLast()) {
			path = joinIndex(path, n-1)
		}
	}
	return path, lastKey
}

// scan records the positions of all keys and values.
func (t *tomlPositions) scan() {
	t.p.Reset(t.data)
	current := ""
	for t.p.NextExpression() {
		e := t.p.Expression()
		switch e.Kind {
		case unstable.Table:
			current, _ = t.resolve("", e.Key(), false)
		case unstable.ArrayTable:
			path, kp := t.resolve("", e.Key(), true)
			n := t.arrays[path]
			t.arrays[path] = n + 1
			current = joinIndex(path, n)
			t.note(current, kp, kp)
		case unstable.KeyValue:
			t.keyValue(current, e)
		}
	}
}

func (t *tomlPositions) keyValue(base string, e *unstable.Node) {
	path, kp := t.resolve(base, e.Key(), false)
	t.value(path, e.Value(), kp)
}

// value notes the position of value v at path; fallback is used for values
// go-toml gives no range (arrays).
func (t *tomlPositions) value(path string, v *unstable.Node, fallback pos) {
	at := fallback
	if v.Raw.Length > 0 || v.Kind == unstable.InlineTable {
		at = t.at(v.Raw)
	}
	switch v.Kind {
	case unstable.Array:
		// An array has no range of its own: take its first element's.
		i := 0
		it := v.Children()
		first := true
		for it.Next() {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			if first && c.Raw.Length > 0 {
				at = t.at(c.Raw)
			}
			first = false
			t.value(joinIndex(path, i), c, at)
			i++
		}
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				t.keyValue(path, c)
			}
		}
	}
	l := t.locs[path]
	l.val = at
	if l.key == (pos{}) {
		l.key = fallback
	}
	t.locs[path] = l
}

// node converts a value decoded by go-toml into a node, with positions.
func (t *tomlPositions) node(v any, path string, fallback pos) *node {
	at := fallback
	if l, ok := t.locs[path]; ok && l.val != (pos{}) {
		at = l.val
	}
	switch v := v.(type) {
	case map[string]any:
		n := &node{kind: mapKind, pos: at}
		for k, c := range v {
			cp := joinKey(path, k)
			kp := at
			if l, ok := t.locs[cp]; ok && l.key != (pos{}) {
				kp = l.key
			}
			n.fields = append(n.fields, field{key: k, keyPos: kp, val: t.node(c, cp, kp)})
		}
		slices.SortFunc(n.fields, func(a, b field) int {
			return cmp.Or(cmp.Compare(a.keyPos.line, b.keyPos.line), cmp.Compare(a.keyPos.col, b.keyPos.col), strings.Compare(a.key, b.key))
		})
		return n
	case []any:
		n := &node{kind: listKind, pos: at}
		for i, c := range v {
			n.items = append(n.items, t.node(c, joinIndex(path, i), at))
		}
		return n
	case []map[string]any: // not produced today; cheap to accept
		n := &node{kind: listKind, pos: at}
		for i, c := range v {
			n.items = append(n.items, t.node(c, joinIndex(path, i), at))
		}
		return n
	case string:
		return &node{kind: stringKind, pos: at, str: v}
	case bool:
		return &node{kind: boolKind, pos: at, b: v}
	case int64:
		return &node{kind: intKind, pos: at, str: strconv.FormatInt(v, 10)}
	case float64:
		s := strconv.FormatFloat(v, 'g', -1, 64)
		if math.IsInf(v, 0) || math.IsNaN(v) {
			s = strings.TrimPrefix(strings.ToLower(s), "+")
		}
		return &node{kind: floatKind, pos: at, str: s}
	case time.Time, toml.LocalDateTime:
		return &node{kind: otherKind, pos: at, str: "a date-time"}
	case toml.LocalDate:
		return &node{kind: otherKind, pos: at, str: "a date"}
	case toml.LocalTime:
		return &node{kind: otherKind, pos: at, str: "a time"}
	case nil:
		return &node{kind: nullKind, pos: at}
	default:
		return &node{kind: otherKind, pos: at, str: fmt.Sprintf("a %T", v)}
	}
}
