package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxYAMLNodes bounds the nodes built from a YAML document, counting each
// expansion of an alias, so that "billion laughs" documents fail fast.
const maxYAMLNodes = 10_000

// parseYAML parses a single YAML document into a node tree. An empty
// document is an empty config.
func parseYAML(data []byte) (root *node, perr *Error) {
	defer func() {
		// The YAML library is not ours; never let a panic in it escape.
		if r := recover(); r != nil {
			root, perr = nil, &Error{Msg: fmt.Sprintf("YAML parser failed: %v", r)}
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return &node{kind: nullKind, pos: pos{1, 1}}, nil
		}
		return nil, yamlSyntaxError(err)
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, yamlSyntaxError(err)
	default:
		return nil, &Error{Line: extra.Line, Column: extra.Column,
			Msg: "a second YAML document (after ---): a config file holds one document"}
	}
	b := &yamlBuilder{budget: maxYAMLNodes}
	return b.convert(&doc, 0)
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// yamlSyntaxError turns "yaml: line 3: did not find expected key" into an
// *Error on line 3.
func yamlSyntaxError(err error) *Error {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return &Error{Line: line, Msg: "YAML syntax error: " + m[2] + yamlSyntaxHint(m[2])}
	}
	return &Error{Msg: "YAML syntax error: " + strings.TrimPrefix(msg, "yaml: ")}
}

func yamlSyntaxHint(msg string) string {
	switch {
	case strings.Contains(msg, "found character that cannot start any token"):
		return " (tabs cannot indent YAML; use spaces)"
	case strings.Contains(msg, "mapping values are not allowed"):
		return " (check the indentation of this line, and quote values that contain \": \")"
	case strings.Contains(msg, "did not find expected"), strings.Contains(msg, "could not find expected"):
		return " (check the indentation and the closing ], } or quote near this line)"
	}
	return ""
}

type yamlBuilder struct {
	budget int
}

func (b *yamlBuilder) convert(n *yaml.Node, depth int) (*node, *Error) {
	at := pos{n.Line, n.Column}
	b.budget--
	if b.budget < 0 {
		return nil, &Error{Line: at.line, Column: at.col, Msg: "YAML document too large (aliases expand to too many values)"}
	}
	if depth > maxDepth {
		return nil, &Error{Line: at.line, Column: at.col, Msg: "YAML nested too deeply (an alias inside its own anchor?)"}
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return &node{kind: nullKind, pos: at}, nil
		}
		return b.convert(n.Content[0], depth+1)
	case yaml.AliasNode:
		if n.Alias == nil {
			return nil, &Error{Line: at.line, Column: at.col, Msg: "YAML alias to an unknown anchor"}
		}
		return b.convert(n.Alias, depth+1)
	case yaml.SequenceNode:
		out := &node{kind: listKind, pos: at}
		for _, c := range n.Content {
			v, err := b.convert(c, depth+1)
			if err != nil {
				return nil, err
			}
			out.items = append(out.items, v)
		}
		return out, nil
	case yaml.MappingNode:
		return b.mapping(n, depth)
	case yaml.ScalarNode:
		return b.scalar(n)
	}
	return nil, &Error{Line: at.line, Column: at.col, Msg: fmt.Sprintf("unexpected YAML node kind %d", n.Kind)}
}

// mapping converts a mapping, applying merge keys ("<<: *anchor"): merged
// members fill in keys that the mapping does not set itself.
func (b *yamlBuilder) mapping(n *yaml.Node, depth int) (*node, *Error) {
	out := &node{kind: mapKind, pos: pos{n.Line, n.Column}}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merges = append(merges, v)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			return nil, &Error{Line: k.Line, Column: k.Column, Msg: "YAML keys must be plain strings"}
		}
		val, err := b.convert(v, depth+1)
		if err != nil {
			return nil, err
		}
		out.fields = append(out.fields, field{key: k.Value, keyPos: pos{k.Line, k.Column}, val: val})
	}
	for _, m := range merges {
		src := m
		for src.Kind == yaml.AliasNode && src.Alias != nil {
			src = src.Alias
		}
		var sources []*yaml.Node
		switch src.Kind {
		case yaml.MappingNode:
			sources = []*yaml.Node{m}
		case yaml.SequenceNode:
			sources = src.Content
		default:
			return nil, &Error{Line: m.Line, Column: m.Column, Msg: "YAML merge key (<<) wants a mapping or a list of mappings"}
		}
		for _, s := range sources {
			mv, err := b.convert(s, depth+1)
			if err != nil {
				return nil, err
			}
			if mv.kind != mapKind {
				return nil, &Error{Line: s.Line, Column: s.Column, Msg: "YAML merge key (<<) wants a mapping or a list of mappings"}
			}
			for _, f := range mv.fields {
				if !hasField(out.fields, f.key) {
					out.fields = append(out.fields, f)
				}
			}
		}
	}
	return out, nil
}

func hasField(fs []field, key string) bool {
	for _, f := range fs {
		if f.key == key {
			return true
		}
	}
	return false
}

func (b *yamlBuilder) scalar(n *yaml.Node) (*node, *Error) {
	at := pos{n.Line, n.Column}
	switch n.ShortTag() {
	case "!!null":
		return &node{kind: nullKind, pos: at}, nil
	case "!!bool":
		var v bool
		if err := n.Decode(&v); err != nil {
			return nil, &Error{Line: at.line, Column: at.col, Msg: fmt.Sprintf("bad YAML boolean %q", n.Value)}
		}
		return &node{kind: boolKind, pos: at, b: v}, nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err == nil {
			return &node{kind: intKind, pos: at, str: strconv.FormatInt(i, 10)}, nil
		}
		var u uint64
		if err := n.Decode(&u); err == nil {
			return &node{kind: intKind, pos: at, str: strconv.FormatUint(u, 10)}, nil
		}
		// Out of range for any Go integer: keep the text, the decoder
		// reports it against the field's type.
		return &node{kind: intKind, pos: at, str: n.Value}, nil
	case "!!float":
		return &node{kind: floatKind, pos: at, str: n.Value}, nil
	case "!!str", "!!timestamp":
		// An unquoted date is a string as far as a config is concerned.
		return &node{kind: stringKind, pos: at, str: n.Value}, nil
	case "!!binary":
		return &node{kind: otherKind, pos: at, str: "binary data"}, nil
	default:
		return nil, &Error{Line: at.line, Column: at.col, Msg: fmt.Sprintf("unsupported YAML tag %q", n.Tag)}
	}
}
