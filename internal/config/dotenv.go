package config

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
)

// maxEnvFileSize bounds what LoadEnvFile reads.
const maxEnvFileSize = 4 << 20

// LoadEnvFile reads a dotenv file and returns its variables. The format:
//
//	# comment lines and blank lines are skipped
//	KEY=value             unquoted: trimmed, ends at " #" (a comment)
//	export KEY=value      "export " is allowed and ignored
//	KEY = value           spaces around = are allowed
//	KEY=                  empty value
//	KEY="a\nb \"q\""      double quotes: \n \r \t \" \\ \$ escapes; may span lines
//	KEY='a $b \n'         single quotes: taken literally; may span lines
//
// Names start with a letter or '_' and go on with letters, digits, '_', '.'
// and '-'. Values are taken literally: "${VAR}" is not expanded. A later
// line for the same name wins. Errors name the file and line:
// ".env:3: want KEY=VALUE, got "oops"".
func LoadEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read env file: %s is not a regular file", path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxEnvFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read env file: %w", err)
	}
	if len(data) > maxEnvFileSize {
		return nil, fmt.Errorf("read env file: %s is larger than %d MiB", path, maxEnvFileSize>>20)
	}
	return ParseEnvFile(path, data)
}

// ParseEnvFile parses dotenv data (see LoadEnvFile); name prefixes errors.
func ParseEnvFile(name string, data []byte) (map[string]string, error) {
	data = bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF")) // UTF-8 BOM
	p := &envParser{name: name, s: string(data), line: 1}
	env := map[string]string{}
	for {
		k, v, ok, err := p.next()
		if err != nil {
			return nil, err
		}
		if !ok {
			return env, nil
		}
		env[k] = v
	}
}

type envParser struct {
	name string
	s    string // the rest of the input
	line int    // line of the start of s
}

func (p *envParser) errorf(line int, format string, args ...any) error {
	return fmt.Errorf("%s:%d: %s", p.name, line, fmt.Sprintf(format, args...))
}

// takeLine removes and returns the next line, without its end of line.
func (p *envParser) takeLine() string {
	l, rest, found := strings.Cut(p.s, "\n")
	p.s = rest
	if found {
		p.line++
	} else {
		p.s = ""
	}
	return strings.TrimSuffix(l, "\r")
}

// next returns the next variable; ok is false at the end of the input.
func (p *envParser) next() (key, val string, ok bool, err error) {
	for p.s != "" {
		start := p.line
		// Look at the line without consuming it: quoted values may go on.
		l, _, _ := strings.Cut(p.s, "\n")
		t := strings.TrimSpace(l)
		if t == "" || t[0] == '#' {
			p.takeLine()
			continue
		}
		rest := strings.TrimLeft(p.s, " \t")
		if r, found := strings.CutPrefix(rest, "export"); found && r != "" && (r[0] == ' ' || r[0] == '\t') {
			rest = strings.TrimLeft(r, " \t")
		}
		// The name.
		i := 0
		for i < len(rest) && isEnvNameByte(rest[i], i == 0) {
			i++
		}
		key = rest[:i]
		rest = strings.TrimLeft(rest[i:], " \t")
		if !strings.HasPrefix(rest, "=") {
			if key == "" {
				return "", "", false, p.errorf(start, "want KEY=VALUE, got %s (names start with a letter or '_')", quoteValue(t))
			}
			if rest == "" || rest[0] == '\n' || rest[0] == '\r' {
				return "", "", false, p.errorf(start, "want KEY=VALUE, got %s (add = for an empty value)", quoteValue(t))
			}
			return "", "", false, p.errorf(start, "want KEY=VALUE, got %s (names are letters, digits, '_', '.' and '-', not starting with a digit)", quoteValue(t))
		}
		if key == "" {
			return "", "", false, p.errorf(start, "want KEY=VALUE, got %s (missing name before =)", quoteValue(t))
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		p.s = rest
		switch {
		case strings.HasPrefix(rest, `"`):
			val, err = p.quoted(start, '"')
		case strings.HasPrefix(rest, `'`):
			val, err = p.quoted(start, '\'')
		default:
			val = p.takeLine()
			if i := strings.Index(val, " #"); i >= 0 {
				val = val[:i]
			} else if i := strings.Index(val, "\t#"); i >= 0 {
				val = val[:i]
			}
			val = strings.TrimSpace(val)
		}
		if err != nil {
			return "", "", false, err
		}
		if strings.IndexByte(val, 0) >= 0 {
			return "", "", false, p.errorf(start, "the value of %s contains a NUL byte", key)
		}
		return key, val, true, nil
	}
	return "", "", false, nil
}

// quoted reads a value in quotes q from p.s (which starts with q), then
// checks that only a comment follows on its line.
func (p *envParser) quoted(start int, q byte) (string, error) {
	var b strings.Builder
	s := p.s[1:]
	line := p.line
	i := 0
	for ; ; i++ {
		if i >= len(s) {
			return "", p.errorf(start, "missing closing %c quote", q)
		}
		c := s[i]
		if c == q {
			break
		}
		if c == '\n' {
			line++
		}
		if c == '\\' && q == '"' && i+1 < len(s) {
			i++
			switch e := s[i]; e {
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '"', '\\', '$', '\'', '`':
				b.WriteByte(e)
			case '\n':
				line++ // a backslash at the end of a line joins lines
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
			continue
		}
		b.WriteByte(c)
	}
	p.s = s[i+1:]
	p.line = line
	after := strings.TrimSpace(p.takeLine())
	if after != "" && after[0] != '#' {
		return "", p.errorf(line, "unexpected %s after the closing %c quote", quoteValue(after), q)
	}
	return strings.ReplaceAll(b.String(), "\r\n", "\n"), nil
}

func isEnvNameByte(c byte, first bool) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		return true
	case first:
		return false
	case c >= '0' && c <= '9', c == '.', c == '-':
		return true
	}
	return false
}
