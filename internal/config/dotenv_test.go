package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseEnvFile(t *testing.T) {
	data := strings.Join([]string{
		"\xEF\xBB\xBF# leading BOM and a comment",
		"",
		"   # indented comment",
		"PLAIN=value",
		"export EXPORTED=yes",
		"export\tTABBED=1",
		"SPACED = around equals  ",
		"EMPTY=",
		"EMPTY_QUOTED=\"\"",
		"COMMENTED=value # a comment",
		"HASH=a#b",
		`DOUBLE="line1\nline2 \"q\" \\ \$HOME tab\t"`,
		`SINGLE='lit $HOME \n "x"'  # comment after quotes`,
		`MULTI="first`,
		`second"`,
		"INNER=it's \"fine\"",
		"dotted.name-x=1",
		"_UNDERSCORE=2",
		"export=3",
		"DUP=first",
		"DUP=second",
		"CRLF=x\r",
		"URL=postgres://u:p@h:5432/db?x=1",
		"LAST=no newline",
	}, "\n")
	got, err := ParseEnvFile("t.env", []byte(data))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"PLAIN":         "value",
		"EXPORTED":      "yes",
		"TABBED":        "1",
		"SPACED":        "around equals",
		"EMPTY":         "",
		"EMPTY_QUOTED":  "",
		"COMMENTED":     "value",
		"HASH":          "a#b",
		"DOUBLE":        "line1\nline2 \"q\" \\ $HOME tab\t",
		"SINGLE":        `lit $HOME \n "x"`,
		"MULTI":         "first\nsecond",
		"INNER":         `it's "fine"`,
		"dotted.name-x": "1",
		"_UNDERSCORE":   "2",
		"export":        "3",
		"DUP":           "second",
		"CRLF":          "x",
		"URL":           "postgres://u:p@h:5432/db?x=1",
		"LAST":          "no newline",
	}
	if !reflect.DeepEqual(got, want) {
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %q, want %q", k, got[k], v)
			}
		}
		for k := range got {
			if _, ok := want[k]; !ok {
				t.Errorf("unexpected %s = %q", k, got[k])
			}
		}
	}
}

func TestParseEnvFileErrors(t *testing.T) {
	for _, tc := range []struct{ data, want string }{
		{"A=1\nnot a line\n", `t.env:2: want KEY=VALUE, got "not a line" (names are letters, digits, '_', '.' and '-', not starting with a digit)`},
		{"A=1\n\nJUSTNAME\n", `t.env:3: want KEY=VALUE, got "JUSTNAME" (add = for an empty value)`},
		{"1ABC=x\n", `t.env:1: want KEY=VALUE, got "1ABC=x" (names start with a letter or '_')`},
		{"=x\n", `t.env:1: want KEY=VALUE, got "=x" (missing name before =)`},
		{"export =x\n", `t.env:1: want KEY=VALUE, got "export =x" (missing name before =)`},
		{"A=\"open\nB=2\n", `t.env:1: missing closing " quote`},
		{"A=1\nB='open\n", `t.env:2: missing closing ' quote`},
		{"A=\"x\" y\n", `t.env:1: unexpected "y" after the closing " quote`},
		{"A=\"multi\nline\" junk\n", `t.env:2: unexpected "junk" after the closing " quote`},
		{"A=\"a\\\nb\"\nC\n", `t.env:3: want KEY=VALUE, got "C" (add = for an empty value)`},
		{"A=x\x00y\n", `t.env:1: the value of A contains a NUL byte`},
	} {
		_, err := ParseEnvFile("t.env", []byte(tc.data))
		if err == nil || err.Error() != tc.want {
			t.Errorf("ParseEnvFile(%q):\n got: %v\nwant: %s", tc.data, err, tc.want)
		}
	}
}

func TestLoadEnvFile(t *testing.T) {
	got, err := LoadEnvFile("testdata/good/dev.env")
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"API_URL": "http://localhost:8080", "GREETING": "hello\nworld"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}

	_, err = LoadEnvFile(filepath.Join(t.TempDir(), "missing.env"))
	if !errors.Is(err, fs.ErrNotExist) || !strings.HasPrefix(err.Error(), "read env file: ") {
		t.Errorf("missing file: %v", err)
	}
	_, err = LoadEnvFile(t.TempDir())
	if err == nil || !strings.HasSuffix(err.Error(), "is not a regular file") {
		t.Errorf("directory: %v", err)
	}
	big := filepath.Join(t.TempDir(), "big.env")
	if err := os.WriteFile(big, []byte("A="+strings.Repeat("x", maxEnvFileSize)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadEnvFile(big)
	if err == nil || !strings.Contains(err.Error(), "is larger than 4 MiB") {
		t.Errorf("big file: %v", err)
	}
}
