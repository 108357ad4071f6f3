package config

import (
	"encoding/json"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDurationJSON(t *testing.T) {
	for in, want := range map[string]time.Duration{
		`"30s"`:   30 * time.Second,
		`"1m30s"`: 90 * time.Second,
		`45`:      45 * time.Second,
		`0`:       0,
		`"0"`:     0,
	} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err != nil || time.Duration(d) != want {
			t.Errorf("Unmarshal(%s) = %v, %v; want %v", in, d, err, want)
		}
	}
	for _, in := range []string{`"30"`, `"soon"`, `1.5`, `true`, `99999999999999999`} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("Unmarshal(%s) = %v, want an error", in, d)
		}
	}
	d := Duration(5 * time.Second)
	if err := json.Unmarshal([]byte(`null`), &d); err != nil || d != Duration(5*time.Second) {
		t.Errorf("null changed the value: %v, %v", d, err)
	}
	b, err := json.Marshal(struct {
		D Duration `json:"d"`
	}{Duration(90 * time.Second)})
	if err != nil || string(b) != `{"d":"1m30s"}` {
		t.Errorf("Marshal = %s, %v", b, err)
	}
}

func TestDurationYAMLAndText(t *testing.T) {
	var v struct {
		A Duration `yaml:"a"`
		B Duration `yaml:"b"`
	}
	if err := yaml.Unmarshal([]byte("a: 2m\nb: 15\n"), &v); err != nil || v.A != Duration(2*time.Minute) || v.B != Duration(15*time.Second) {
		t.Errorf("yaml: %+v, %v", v, err)
	}
	if err := yaml.Unmarshal([]byte("a: [1]\n"), &v); err == nil {
		t.Error("yaml list: no error")
	}
	out, err := yaml.Marshal(v)
	if err != nil || string(out) != "a: 2m0s\nb: 15s\n" {
		t.Errorf("yaml.Marshal = %q, %v", out, err)
	}

	var d Duration
	if err := d.UnmarshalText([]byte("10")); err != nil || d != Duration(10*time.Second) {
		t.Errorf("UnmarshalText(10) = %v, %v", d, err)
	}
	if err := d.UnmarshalText([]byte("250ms")); err != nil || d != Duration(250*time.Millisecond) {
		t.Errorf("UnmarshalText(250ms) = %v, %v", d, err)
	}
	if err := d.UnmarshalText([]byte("x")); err == nil {
		t.Error("UnmarshalText(x): no error")
	}
	if b, _ := Duration(time.Hour).MarshalText(); string(b) != "1h0m0s" {
		t.Errorf("MarshalText = %s", b)
	}
}
