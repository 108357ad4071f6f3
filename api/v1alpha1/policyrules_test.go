package v1alpha1

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/tether-dev/tether/internal/policy"
)

// TestPolicyRulesRoundTrip: every field of policy.Rules survives
// targets/policy, and the JSON of both types is the same.
func TestPolicyRulesRoundTrip(t *testing.T) {
	r := policy.Rules{Name: "Policy a/b", Block: []string{"steal"}, RequireHeaderFilter: "^x$",
		EnvExclude: []string{"A"}, EnvMask: []string{"B"}, FSReadOnly: []string{"c"}, FSLocal: []string{"d"}, FSNotFound: []string{"e"},
		OutgoingAllow: []policy.OutgoingRule{{CIDR: "10.0.0.0/8", Except: []string{"10.1.0.0/16"}, Hostname: "h", Port: 1, Protocol: "tcp"}},
		OutgoingBlock: []policy.OutgoingRule{{Hostname: "^redis"}}}
	// Every field set: a field added to Rules and not here fails.
	v := reflect.ValueOf(r)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("set %s in this test", v.Type().Field(i).Name)
		}
	}
	api := PolicyRulesOf(r)
	if got := api.Rules(); !reflect.DeepEqual(got, r) {
		t.Fatalf("round trip: %+v\nwant %+v", got, r)
	}
	a, _ := json.Marshal(api)
	b, _ := json.Marshal(r)
	if string(a) != string(b) {
		t.Fatalf("JSON differs:\n%s\n%s", a, b)
	}
}
