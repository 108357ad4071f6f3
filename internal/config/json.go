package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// parseJSON parses a JSON document into a node tree. Positions come from the
// decoder's byte offsets; encoding/json does the actual scanning, so syntax
// is exactly the standard library's.
func parseJSON(data []byte) (*node, *Error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &Error{Line: 1, Column: 1, Msg: "empty JSON file: write {} for a config with all defaults"}
	}
	// encoding/json's Unmarshal reports syntax errors at the offending byte
	// (the Decoder's token offsets are less precise), so check syntax first.
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return nil, syntaxError(data, err)
	}
	p := &jsonParser{data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	p.dec.UseNumber()
	root, err := p.value(0)
	if err != nil {
		return nil, err
	}
	// Anything after the top-level value is an error.
	off := p.start(p.dec.InputOffset())
	if _, terr := p.dec.Token(); terr != io.EOF {
		if terr != nil {
			return nil, p.tokenError(terr, off)
		}
		return nil, &Error{Line: lineCol(data, off).line, Column: lineCol(data, off).col,
			Msg: "unexpected data after the end of the top-level object; a config file holds one object"}
	}
	return root, nil
}

type jsonParser struct {
	data []byte
	dec  *json.Decoder
}

// start returns the offset of the next token, given the decoder's offset
// after the previous one: it skips white space and a ',' or ':' separator.
func (p *jsonParser) start(off int64) int {
	i := int(off)
	skip := func() {
		for i < len(p.data) && (p.data[i] == ' ' || p.data[i] == '\t' || p.data[i] == '\n' || p.data[i] == '\r') {
			i++
		}
	}
	skip()
	if i < len(p.data) && (p.data[i] == ',' || p.data[i] == ':') {
		i++
		skip()
	}
	return i
}

// next reads a token and returns it with its position.
func (p *jsonParser) next() (json.Token, pos, *Error) {
	off := p.start(p.dec.InputOffset())
	tok, err := p.dec.Token()
	if err != nil {
		return nil, pos{}, p.tokenError(err, off)
	}
	return tok, lineCol(p.data, off), nil
}

// tokenError turns a decoder error into an *Error with a position. The
// syntax was checked before, so this is for the unexpected.
func (p *jsonParser) tokenError(err error, off int) *Error {
	var se *json.SyntaxError
	if errors.As(err, &se) || errors.Is(err, io.ErrUnexpectedEOF) {
		return syntaxError(p.data, err)
	}
	at := lineCol(p.data, off)
	return &Error{Line: at.line, Column: at.col, Msg: "JSON syntax error: " + err.Error()}
}

// syntaxError places an error from json.Unmarshal, whose SyntaxError.Offset
// counts the bytes up to and including the offending one.
func syntaxError(data []byte, err error) *Error {
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			se = &json.SyntaxError{Offset: int64(len(data))}
		} else {
			return &Error{Msg: "JSON syntax error: " + err.Error()}
		}
	}
	if se.Error() == "unexpected end of JSON input" || se.Error() == "" {
		end := len(bytes.TrimRight(data, " \t\r\n"))
		at := lineCol(data, max(0, end-1))
		return &Error{Line: at.line, Column: at.col, Msg: "JSON syntax error: unexpected end of file (a missing }, ] or \"?)"}
	}
	bad := int(se.Offset) - 1
	at := lineCol(data, bad)
	return &Error{Line: at.line, Column: at.col, Msg: "JSON syntax error: " + se.Error() + jsonSyntaxHint(data, bad, se.Error())}
}

func (p *jsonParser) value(depth int) (*node, *Error) {
	tok, at, err := p.next()
	if err != nil {
		return nil, err
	}
	if depth > maxDepth {
		return nil, &Error{Line: at.line, Column: at.col, Msg: "JSON nested too deeply"}
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			n := &node{kind: mapKind, pos: at}
			for p.dec.More() {
				ktok, kpos, err := p.next()
				if err != nil {
					return nil, err
				}
				key, ok := ktok.(string)
				if !ok { // cannot happen: the decoder checks keys are strings
					return nil, &Error{Line: kpos.line, Column: kpos.col, Msg: "JSON syntax error: object key is not a string"}
				}
				v, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.fields = append(n.fields, field{key: key, keyPos: kpos, val: v})
			}
			if _, _, err := p.next(); err != nil { // '}'
				return nil, err
			}
			return n, nil
		case '[':
			n := &node{kind: listKind, pos: at}
			for p.dec.More() {
				v, err := p.value(depth + 1)
				if err != nil {
					return nil, err
				}
				n.items = append(n.items, v)
			}
			if _, _, err := p.next(); err != nil { // ']'
				return nil, err
			}
			return n, nil
		default:
			return nil, &Error{Line: at.line, Column: at.col, Msg: fmt.Sprintf("JSON syntax error: unexpected %q", t.String())}
		}
	case string:
		return &node{kind: stringKind, pos: at, str: t}, nil
	case json.Number:
		k := intKind
		if strings.ContainsAny(string(t), ".eE") {
			k = floatKind
		}
		return &node{kind: k, pos: at, str: string(t)}, nil
	case bool:
		return &node{kind: boolKind, pos: at, b: t}, nil
	case nil:
		return &node{kind: nullKind, pos: at}, nil
	default:
		return nil, &Error{Line: at.line, Column: at.col, Msg: fmt.Sprintf("JSON syntax error: unexpected token %v", t)}
	}
}

// jsonSyntaxHint explains common mistakes behind a syntax error at offset
// bad with message msg.
func jsonSyntaxHint(data []byte, bad int, msg string) string {
	if bad < 0 || bad >= len(data) {
		return ""
	}
	c := data[bad]
	prev := bytes.TrimRight(data[:bad], " \t\r\n")
	switch {
	case c == '/' || c == '#':
		return " (JSON has no comments; use a .yaml or .toml config to keep comments)"
	case c == '\'':
		return " (JSON strings take double quotes)"
	case strings.HasSuffix(msg, "after top-level value"):
		return " (a config file holds one object)"
	case (c == '}' || c == ']') && len(prev) > 0 && prev[len(prev)-1] == ',':
		return " (remove the trailing comma)"
	case strings.HasSuffix(msg, "after object key:value pair") || strings.HasSuffix(msg, "after array element"):
		return " (missing comma?)"
	case strings.HasSuffix(msg, "after object key"):
		return " (missing colon?)"
	}
	return ""
}
