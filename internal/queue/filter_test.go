package queue

import (
	"strings"
	"testing"
)

func TestParseFilter(t *testing.T) {
	for _, tc := range []struct {
		spec    map[string]string
		wantErr string
	}{
		{spec: map[string]string{"x-tether-user": "^me$"}},
		{spec: map[string]string{"a": "1", "b": "2"}},
		{spec: nil, wantErr: "empty message_filter"},
		{spec: map[string]string{"x": "("}, wantErr: `message_filter "x": "(" is not a regular expression`},
		{spec: map[string]string{" ": "a"}, wantErr: "empty header name"},
	} {
		_, err := ParseFilter(tc.spec)
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("ParseFilter(%v) = %v, want error %q", tc.spec, err, tc.wantErr)
		}
	}
}

func TestFilterMatch(t *testing.T) {
	f, err := ParseFilter(map[string]string{"x-tether-user": "^me$", "kind": "visit|view"})
	if err != nil {
		t.Fatal(err)
	}
	msg := func(h ...string) *Message {
		m := &Message{}
		for i := 0; i+1 < len(h); i += 2 {
			m.Headers = append(m.Headers, Header{Key: h[i], Value: []byte(h[i+1])})
		}
		return m
	}
	for _, tc := range []struct {
		m    *Message
		want bool
	}{
		{msg("x-tether-user", "me", "kind", "visit"), true},
		{msg("kind", "view", "x-tether-user", "me"), true},
		{msg("x-tether-user", "me"), false},                    // a header missing
		{msg("x-tether-user", "meme", "kind", "visit"), false}, // anchored
		{msg("X-Tether-User", "me", "kind", "visit"), false},   // header names are exact
		{msg("x-tether-user", "you", "kind", "visit"), false},  // another value
		{msg(), false},
	} {
		if got := f.Match(tc.m); got != tc.want {
			t.Errorf("Match(%v) = %v, want %v", tc.m.Headers, got, tc.want)
		}
	}
	if (Filter{}).Match(msg("a", "b")) {
		t.Error("an empty filter matched")
	}
	if got := f.String(); got != "kind=visit|view, x-tether-user=^me$" {
		t.Errorf("String() = %q", got)
	}
}
