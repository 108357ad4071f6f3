package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Extensions lists the config file extensions Load understands, in the
// order LoadDefault looks for them.
var Extensions = []string{".json", ".yaml", ".yml", ".toml"}

// formatOf picks the format for a file name by its extension.
func formatOf(name string) (format, error) {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".json":
		return formatJSON, nil
	case ".yaml", ".yml":
		return formatYAML, nil
	case ".toml":
		return formatTOML, nil
	}
	ext := filepath.Ext(name)
	if ext == "" {
		return 0, fmt.Errorf("%s: config file has no extension: name it .json, .yaml, .yml or .toml", name)
	}
	return 0, fmt.Errorf("%s: unsupported config file extension %q: use .json, .yaml, .yml or .toml", name, ext)
}

// Load reads the config file at path, in the format its extension names
// (.json, .yaml, .yml or .toml), and validates it.
//
// Loading is strict: an unknown key, a value of the wrong type, a syntax
// error or a failed check (see Validate) is an error naming the file, the
// line and column, and the key path, such as
//
//	tether.yaml:7:3: unknown key "fs.mdoe" (did you mean "fs.mode"?)
//	tether.json:3:19: "incoming.ports[1]": want a port number 1-65535, got "abc"
//
// All problems found are reported, as a single *Error or several joined
// with errors.Join.
//
// Keys the file does not set keep their zero values; the accessor methods
// (FSMode, IncomingMode, ...) supply the defaults.
func Load(path string) (*Config, error) {
	if _, err := formatOf(path); err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		hint := ""
		switch {
		case errors.Is(err, fs.ErrNotExist):
			hint = " (check the path of the config file)"
		case errors.Is(err, fs.ErrPermission):
			hint = " (check the file's permissions)"
		}
		return nil, fmt.Errorf("read config: %w%s", err, hint)
	}
	return Parse(path, data)
}

// Parse is Load for a file already in memory: name picks the format by its
// extension and prefixes error messages.
func Parse(name string, data []byte) (*Config, error) {
	f, err := formatOf(name)
	if err != nil {
		return nil, err
	}
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF")) // a UTF-8 BOM some editors write
	var (
		root *node
		perr *Error
	)
	switch f {
	case formatJSON:
		root, perr = parseJSON(data)
	case formatYAML:
		root, perr = parseYAML(data)
	default:
		root, perr = parseTOML(data)
	}
	if perr != nil {
		perr.File = name
		return nil, perr
	}
	d := newDecoder(name, f)
	c := new(Config)
	d.decodeRoot(root, c)
	if len(d.errs) > 0 {
		return nil, joinErrors(d.errs)
	}
	if errs := c.check(); len(errs) > 0 {
		for _, e := range errs {
			e.File = name
			d.place(e)
		}
		return nil, joinErrors(errs)
	}
	return c, nil
}

// place sets the position of a validation error from its key path: the
// value's position, or the key's for errors about the key itself. A path
// not in the file falls back to its closest parent that is.
func (d *decoder) place(e *Error) {
	for p := e.Path; ; p = parentPath(p) {
		if l, ok := d.locs[p]; ok && p != "" {
			at := l.val
			if e.onKey || at == (pos{}) {
				at = l.key
			}
			if at != (pos{}) {
				e.Line, e.Column = at.line, at.col
				return
			}
		}
		if p == "" {
			return
		}
	}
}

// DefaultDir is the directory, relative to a project, that LoadDefault
// looks in.
const DefaultDir = ".tether"

// LoadDefault loads DIR/.tether/config.{json,yaml,yml,toml}, whichever
// exists, and returns it with the path it was read from. With no such file
// it returns an empty Config (all defaults) and "". More than one such file
// is an error, since it is unclear which one is meant.
func LoadDefault(dir string) (*Config, string, error) {
	var found []string
	for _, ext := range Extensions {
		p := filepath.Join(dir, DefaultDir, "config"+ext)
		fi, err := os.Stat(p)
		switch {
		case err == nil && !fi.IsDir():
			found = append(found, p)
		case err == nil || errors.Is(err, fs.ErrNotExist):
		default:
			return nil, "", fmt.Errorf("look for default config: %w", err)
		}
	}
	switch len(found) {
	case 0:
		return new(Config), "", nil
	case 1:
		c, err := Load(found[0])
		if err != nil {
			return nil, "", err
		}
		return c, found[0], nil
	default:
		return nil, "", fmt.Errorf("found %d config files: %s; keep only one of them", len(found), strings.Join(found, ", "))
	}
}
