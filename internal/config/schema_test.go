package config

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite schema.json from Schema()")

// TestSchemaUpToDate fails when schema.json is not what Schema() generates.
// Regenerate it with: go test ./internal/config -run TestSchemaUpToDate -update
func TestSchemaUpToDate(t *testing.T) {
	got := Schema()
	if *update {
		if err := os.WriteFile("schema.json", got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile("schema.json")
	if err != nil {
		t.Fatalf("%v (generate it: go test ./internal/config -run TestSchemaUpToDate -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("schema.json is stale: regenerate it with: go test ./internal/config -run TestSchemaUpToDate -update")
	}
}

// TestSchemaCoversConfig checks the schema against the Go types: every key
// is there, no key is required, unknown keys are refused, and the enums
// match what Validate accepts.
func TestSchemaCoversConfig(t *testing.T) {
	var s map[string]any
	if err := json.Unmarshal(Schema(), &s); err != nil {
		t.Fatal(err)
	}
	if s["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v", s["$schema"])
	}
	defs, _ := s["$defs"].(map[string]any)
	resolve := func(m map[string]any) map[string]any {
		if ref, ok := m["$ref"].(string); ok {
			d, _ := defs[strings.TrimPrefix(ref, "#/$defs/")].(map[string]any)
			return d
		}
		return m
	}
	var walk func(t reflect.Type, sch map[string]any, path string)
	walk = func(rt reflect.Type, sch map[string]any, path string) {
		for rt.Kind() == reflect.Pointer {
			rt = rt.Elem()
		}
		switch {
		case rt == targetType:
			// A string, or the object of its fields.
			var kinds []string
			for _, o := range sch["oneOf"].([]any) {
				o := o.(map[string]any)
				kinds = append(kinds, fmt.Sprint(o["type"]))
				if o["type"] == "object" {
					o["description"] = "checked with its parent"
					walk(reflect.TypeFor[struct {
						Path     string `json:"path"`
						Selector string `json:"selector"`
					}](), o, path)
				}
			}
			if fmt.Sprint(kinds) != "[string object]" {
				t.Errorf("%s: oneOf %v, want [string object]", path, kinds)
			}
		case rt == durationType:
			if _, ok := sch["oneOf"]; !ok {
				t.Errorf("%s: duration schema has no oneOf: %v", path, sch)
			}
		case rt.Kind() == reflect.Struct:
			sch = resolve(sch)
			if sch == nil {
				t.Fatalf("%s: no schema", path)
			}
			if sch["additionalProperties"] != false {
				t.Errorf("%s: additionalProperties = %v, want false", path, sch["additionalProperties"])
			}
			if req, ok := sch["required"]; ok {
				t.Errorf("%s: required = %v, want none", path, req)
			}
			props, _ := sch["properties"].(map[string]any)
			fi := structFields(rt)
			if len(props) != len(fi.names) {
				t.Errorf("%s: %d properties, want %d", path, len(props), len(fi.names))
			}
			for _, name := range fi.names {
				p, ok := props[name].(map[string]any)
				if !ok {
					t.Errorf("%s: no property %q", path, name)
					continue
				}
				if _, ok := p["description"]; !ok {
					t.Errorf("%s: no description", joinKey(path, name))
				}
				walk(rt.Field(fi.byName[name]).Type, p, joinKey(path, name))
			}
		case rt.Kind() == reflect.Slice || rt.Kind() == reflect.Array:
			items, _ := sch["items"].(map[string]any)
			walk(rt.Elem(), items, path+"[]")
		case rt.Kind() == reflect.Uint16:
			if sch["minimum"] != 1.0 || sch["maximum"] != 65535.0 {
				t.Errorf("%s: port range %v-%v", path, sch["minimum"], sch["maximum"])
			}
		}
	}
	walk(reflect.TypeFor[Config](), s, "")

	props := s["properties"].(map[string]any)
	enum := func(def, key string) []any {
		d := resolve(props[def].(map[string]any))
		return d["properties"].(map[string]any)[key].(map[string]any)["enum"].([]any)
	}
	if got := enum("fs", "mode"); len(got) != len(FSModes) {
		t.Errorf("fs.mode enum %v, want %v", got, FSModes)
	}
	if got := enum("incoming", "mode"); len(got) != len(IncomingModes) {
		t.Errorf("incoming.mode enum %v, want %v", got, IncomingModes)
	}
}
