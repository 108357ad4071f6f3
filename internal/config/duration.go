package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// durationWant describes what a Duration accepts, for error messages.
const durationWant = `a duration like "30s" or a whole number of seconds`

// errDurationSyntax is returned when a duration is neither a Go duration
// string nor a whole number of seconds.
var errDurationSyntax = errors.New("want " + durationWant)

// String returns the duration in time.Duration's format, e.g. "1m30s".
func (d Duration) String() string { return time.Duration(d).String() }

// parseDurationString parses a Go duration string such as "1m30s".
func parseDurationString(s string) (Duration, error) {
	v, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%w, got %q%s", errDurationSyntax, s, durationHint(s))
	}
	return Duration(v), nil
}

// durationHint suggests a fix for a string that is not a Go duration.
func durationHint(s string) string {
	if _, err := strconv.ParseUint(strings.TrimSpace(s), 10, 63); err == nil {
		return fmt.Sprintf(` (add a unit: "%ss", or write the number without quotes)`, strings.TrimSpace(s))
	}
	return ""
}

// durationFromSeconds converts a whole number of seconds (as decimal text) to a
// Duration, rejecting values that do not fit.
func durationFromSeconds(text string) (Duration, error) {
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil || n > math.MaxInt64/int64(time.Second) || n < math.MinInt64/int64(time.Second) {
		return 0, fmt.Errorf("want %s (at most %d), got %s", durationWant, math.MaxInt64/int64(time.Second), text)
	}
	return Duration(time.Duration(n) * time.Second), nil
}

// MarshalJSON encodes d as a duration string such as "1m30s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// UnmarshalJSON accepts a duration string ("30s") or a whole number of
// seconds (30). null leaves d unchanged.
func (d *Duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case string(b) == "null":
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := parseDurationString(s)
		if err != nil {
			return err
		}
		*d = v
		return nil
	default:
		v, err := durationFromSeconds(string(b))
		if err != nil {
			return err
		}
		*d = v
		return nil
	}
}

// MarshalText encodes d as a duration string such as "1m30s".
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.String()), nil
}

// UnmarshalText accepts a duration string ("30s"). A bare integer is read as
// a number of seconds, so text formats that cannot tell numbers from strings
// behave like the others.
func (d *Duration) UnmarshalText(b []byte) error {
	s := string(b)
	if _, err := strconv.ParseInt(s, 10, 64); err == nil {
		v, err := durationFromSeconds(s)
		if err != nil {
			return err
		}
		*d = v
		return nil
	}
	v, err := parseDurationString(s)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalYAML encodes d as a duration string such as "1m30s".
func (d Duration) MarshalYAML() (any, error) {
	return d.String(), nil
}

// UnmarshalYAML accepts a duration string ("30s") or a whole number of
// seconds (30).
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: %w", n.Line, errDurationSyntax)
	}
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!int":
		var i int64
		if err := n.Decode(&i); err != nil {
			return fmt.Errorf("line %d: %w, got %s", n.Line, errDurationSyntax, n.Value)
		}
		v, err := durationFromSeconds(strconv.FormatInt(i, 10))
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		*d = v
		return nil
	case "!!str":
		v, err := parseDurationString(n.Value)
		if err != nil {
			return fmt.Errorf("line %d: %w", n.Line, err)
		}
		*d = v
		return nil
	default:
		return fmt.Errorf("line %d: %w, got %s", n.Line, errDurationSyntax, n.Value)
	}
}
