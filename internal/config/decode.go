package config

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
)

// The three formats are first parsed into the same position-annotated tree
// (node), then one reflective decoder checks the tree against the Go types
// and fills in a Config. That way every format gets the same strictness and
// the same error messages.

// kind is the type of a node in the generic tree.
type kind uint8

const (
	nullKind   kind = iota
	boolKind        // b holds the value
	intKind         // str holds the decimal text (maybe out of any Go range)
	floatKind       // str holds the text
	stringKind      // str holds the value
	listKind        // items holds the elements
	mapKind         // fields holds the members, in file order
	otherKind       // a value with no place in a config (TOML date...); str describes it
)

// node is a value read from a config file, with its position.
type node struct {
	kind   kind
	pos    pos
	str    string
	b      bool
	items  []*node
	fields []field
}

// field is one key: value member of a mapping.
type field struct {
	key    string
	keyPos pos
	val    *node
}

// format is a config file syntax.
type format int

const (
	formatJSON format = iota
	formatYAML
	formatTOML
)

// mapNoun is what the format calls a mapping.
func (f format) mapNoun() string {
	switch f {
	case formatJSON:
		return "an object"
	case formatYAML:
		return "a mapping"
	default:
		return "a table"
	}
}

// listNoun is what the format calls a list.
func (f format) listNoun() string {
	if f == formatYAML {
		return "a list"
	}
	return "an array"
}

// maxDepth bounds nesting in the parsers; a config is a few levels deep.
const maxDepth = 64

// locs is where a key path is in a file: its key (for members) and value.
type locs struct{ key, val pos }

// decoder fills Go values from a node tree, collecting errors.
type decoder struct {
	file   string
	format format
	errs   []*Error
	locs   map[string]locs
}

func newDecoder(file string, f format) *decoder {
	return &decoder{file: file, format: f, locs: map[string]locs{}}
}

func (d *decoder) errorf(p pos, path string, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: p.line, Column: p.col, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// decodeRoot decodes the top-level node into c.
func (d *decoder) decodeRoot(n *node, c *Config) {
	if n == nil || n.kind == nullKind {
		return // an empty file is an empty config
	}
	if n.kind != mapKind {
		d.errorf(n.pos, "", "want %s of settings at the top level, got %s", d.format.mapNoun(), d.describe(n))
		return
	}
	d.decode(n, reflect.ValueOf(c).Elem(), "")
}

var (
	durationType = reflect.TypeFor[Duration]()
	targetType   = reflect.TypeFor[Target]()
)

// decode stores n into v, which is addressable, reporting mismatches at path.
func (d *decoder) decode(n *node, v reflect.Value, path string) {
	d.locs[path] = locs{key: d.locs[path].key, val: n.pos}
	if v.Type() == durationType {
		d.decodeDuration(n, v, path)
		return
	}
	if v.Type() == targetType && n.kind == stringKind {
		v.Set(reflect.ValueOf(Target{Path: n.str})) // target: deployment/web
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if n.kind == nullKind {
			v.SetZero()
			return
		}
		e := reflect.New(v.Type().Elem())
		d.decode(n, e.Elem(), path)
		v.Set(e)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.Slice:
		if n.kind != listKind {
			d.mismatch(n, v.Type(), path)
			return
		}
		if len(n.items) == 0 {
			v.SetZero() // an empty list is the same as none
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.items), len(n.items))
		for i, it := range n.items {
			d.decode(it, s.Index(i), joinIndex(path, i))
		}
		v.Set(s)
	case reflect.Array:
		if n.kind != listKind || len(n.items) != v.Len() {
			d.mismatch(n, v.Type(), path)
			return
		}
		for i, it := range n.items {
			d.decode(it, v.Index(i), joinIndex(path, i))
		}
	case reflect.String:
		if n.kind != stringKind {
			d.mismatch(n, v.Type(), path)
			return
		}
		v.SetString(n.str)
	case reflect.Bool:
		if n.kind != boolKind {
			d.mismatch(n, v.Type(), path)
			return
		}
		v.SetBool(n.b)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		if n.kind != intKind {
			d.mismatch(n, v.Type(), path)
			return
		}
		u, err := strconv.ParseUint(n.str, 10, v.Type().Bits())
		if err != nil {
			d.mismatch(n, v.Type(), path)
			return
		}
		v.SetUint(u)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		if n.kind != intKind {
			d.mismatch(n, v.Type(), path)
			return
		}
		i, err := strconv.ParseInt(n.str, 10, v.Type().Bits())
		if err != nil {
			d.mismatch(n, v.Type(), path)
			return
		}
		v.SetInt(i)
	case reflect.Float32, reflect.Float64:
		if n.kind != intKind && n.kind != floatKind {
			d.mismatch(n, v.Type(), path)
			return
		}
		f, err := strconv.ParseFloat(n.str, v.Type().Bits())
		if err != nil {
			d.mismatch(n, v.Type(), path)
			return
		}
		v.SetFloat(f)
	default:
		d.errorf(n.pos, path, "internal error: cannot decode into %s", v.Type())
	}
}

func (d *decoder) decodeDuration(n *node, v reflect.Value, path string) {
	var (
		val Duration
		err error
	)
	switch n.kind {
	case nullKind:
		v.SetZero()
		return
	case stringKind:
		val, err = parseDurationString(n.str)
	case intKind:
		val, err = durationFromSeconds(n.str)
	default:
		d.mismatch(n, v.Type(), path)
		return
	}
	if err != nil {
		d.errorf(n.pos, path, "%v", err)
		return
	}
	v.SetInt(int64(val))
}

func (d *decoder) decodeStruct(n *node, v reflect.Value, path string) {
	if n.kind != mapKind {
		d.mismatch(n, v.Type(), path)
		return
	}
	fields := structFields(v.Type())
	seen := map[string]pos{}
	for _, f := range n.fields {
		fpath := joinKey(path, f.key)
		if first, dup := seen[f.key]; dup {
			d.errorf(f.keyPos, fpath, "duplicate key (first set on line %d); keep one", first.line)
			continue
		}
		seen[f.key] = f.keyPos
		i, ok := fields.byName[f.key]
		if !ok {
			d.errs = append(d.errs, &Error{
				File: d.file, Line: f.keyPos.line, Column: f.keyPos.col, Path: fpath,
				Msg:       fmt.Sprintf("unknown key %q%s", fpath, unknownKeyHint(v.Type(), path, f.key)),
				pathInMsg: true,
			})
			continue
		}
		d.locs[fpath] = locs{key: f.keyPos, val: f.val.pos}
		if f.val.kind == nullKind {
			continue // "key: null" / "key:" leaves the default
		}
		d.decode(f.val, v.Field(i), fpath)
	}
}

func (d *decoder) decodeMap(n *node, v reflect.Value, path string) {
	if n.kind != mapKind || v.Type().Key().Kind() != reflect.String {
		d.mismatch(n, v.Type(), path)
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.fields))
	seen := map[string]pos{}
	for _, f := range n.fields {
		fpath := joinKey(path, f.key)
		if first, dup := seen[f.key]; dup {
			d.errorf(f.keyPos, fpath, "duplicate key (first set on line %d); keep one", first.line)
			continue
		}
		seen[f.key] = f.keyPos
		d.locs[fpath] = locs{key: f.keyPos, val: f.val.pos}
		e := reflect.New(v.Type().Elem()).Elem()
		d.decode(f.val, e, fpath)
		m.SetMapIndex(reflect.ValueOf(f.key).Convert(v.Type().Key()), e)
	}
	if m.Len() > 0 { // an empty mapping is the same as none
		v.Set(m)
	}
}

// mismatch reports that n does not fit type t.
func (d *decoder) mismatch(n *node, t reflect.Type, path string) {
	want := d.want(t)
	got := d.describe(n)
	if t.Kind() == reflect.Array && n.kind == listKind {
		got = fmt.Sprintf("%s of %d", got, len(n.items))
	}
	hint := ""
	switch {
	case (t.Kind() == reflect.String || t == targetType) && (n.kind == intKind || n.kind == floatKind || n.kind == boolKind):
		hint = fmt.Sprintf(" (quote it: \"%s\")", got)
	case isInteger(t) && n.kind == stringKind && isDigits(n.str):
		hint = " (remove the quotes)"
	case t.Kind() == reflect.Bool && n.kind == stringKind && (n.str == "true" || n.str == "false"):
		hint = " (remove the quotes)"
	case t.Kind() == reflect.Slice && n.kind != listKind && n.kind != mapKind && n.kind != nullKind:
		hint = fmt.Sprintf(" (write %s even for one value: [%s])", d.format.listNoun(), got)
	}
	d.errorf(n.pos, path, "want %s, got %s%s", want, got, hint)
}

func isInteger(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// portWant is what a port number field accepts.
const portWant = "a port number 1-65535"

// want describes the values type t accepts.
func (d *decoder) want(t reflect.Type) string {
	switch t {
	case durationType:
		return durationWant
	case targetType:
		return "a string such as deployment/NAME, or " + d.format.mapNoun() + " with keys \"path\" or \"selector\""
	}
	switch t.Kind() {
	case reflect.Pointer:
		return d.want(t.Elem())
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Uint16:
		return portWant // every uint16 in Config is a port
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice:
		return d.format.listNoun() + " of " + d.plural(t.Elem())
	case reflect.Array:
		return fmt.Sprintf("%s of %d %s", d.format.listNoun(), t.Len(), d.plural(t.Elem()))
	case reflect.Map:
		return d.format.mapNoun() + " of names to " + d.plural(t.Elem())
	case reflect.Struct:
		names := structFields(t).names
		if len(names) > 6 {
			return d.format.mapNoun()
		}
		return d.format.mapNoun() + " with keys " + orList(names)
	}
	return t.String()
}

// plural names several values of type t.
func (d *decoder) plural(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "strings"
	case reflect.Uint16:
		return "port numbers"
	case reflect.Array:
		return fmt.Sprintf("pairs of %s like [8080, 80]", d.plural(t.Elem()))
	case reflect.Struct:
		if d.format == formatJSON {
			return "objects"
		}
		if d.format == formatYAML {
			return "mappings"
		}
		return "tables"
	}
	return "values"
}

// describe renders a value for "got ..." in an error message.
func (d *decoder) describe(n *node) string {
	switch n.kind {
	case nullKind:
		return "null"
	case boolKind:
		return strconv.FormatBool(n.b)
	case intKind, floatKind:
		return n.str
	case stringKind:
		return quoteValue(n.str)
	case listKind:
		return d.format.listNoun()
	case mapKind:
		return d.format.mapNoun()
	default:
		return n.str
	}
}

// fieldIndex maps the json names of a struct's fields to field indexes.
type fieldIndex struct {
	byName map[string]int
	names  []string // in declaration order
}

var fieldCache sync.Map // reflect.Type -> *fieldIndex

// structFields returns the json names of t's fields.
func structFields(t reflect.Type) *fieldIndex {
	if fi, ok := fieldCache.Load(t); ok {
		return fi.(*fieldIndex)
	}
	fi := &fieldIndex{byName: map[string]int{}}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fi.byName[name] = i
		fi.names = append(fi.names, name)
	}
	fieldCache.Store(t, fi)
	return fi
}

// keyPaths lists the key path of every struct field reachable from Config,
// with "[]" for list elements, e.g. "incoming.http_filter.all_of[].header".
var keyPaths = sync.OnceValue(func() []string {
	var out []string
	var walk func(t reflect.Type, path string)
	walk = func(t reflect.Type, path string) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			if t.Kind() == reflect.Slice {
				path += "[]"
			}
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || t == durationType {
			return
		}
		fi := structFields(t)
		for _, name := range fi.names {
			p := joinKey(path, name)
			out = append(out, p)
			walk(t.Field(fi.byName[name]).Type, p)
		}
	}
	walk(reflect.TypeFor[Config](), "")
	return out
})

// mirrordHints explains top-level keys that mirrord users may bring along.
var mirrordHints = map[string]string{
	"feature": `tether's keys are mirrord's feature.* keys one level up: write "fs", "env", "outgoing", "dns", "incoming" at the top level`,
	"network": `mirrord's feature.network.incoming, .outgoing and .dns are "incoming", "outgoing" and "dns" at the top level`,
}

// unknownKeyHint returns " (did you mean ...?)" for an unknown key in struct
// t at path, the keys known there, or where to find them all.
func unknownKeyHint(t reflect.Type, path, key string) string {
	if path == "" {
		if h, ok := mirrordHints[strings.ToLower(key)]; ok {
			return " (" + h + ")"
		}
	}
	fi := structFields(t)
	if c := closest(key, fi.names); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", joinKey(path, c))
	}
	// The key may belong to another section: "mode" at the top level.
	var elsewhere []string
	nk := normKey(key)
	for _, p := range keyPaths() {
		last := p[strings.LastIndexAny(p, ".]")+1:]
		if normKey(last) == nk && !strings.Contains(p, "[]") {
			elsewhere = append(elsewhere, p)
		}
	}
	if len(elsewhere) > 0 && len(elsewhere) <= 3 {
		return " (did you mean " + orList(elsewhere) + "?)"
	}
	if len(fi.names) <= 8 {
		return " (known keys here: " + strings.Join(fi.names, ", ") + ")"
	}
	return " (remove it; tether config schema lists every key)"
}
