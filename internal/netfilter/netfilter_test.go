package netfilter

import "testing"

func TestTableName(t *testing.T) {
	for _, name := range []string{TableName(4242, 987654), RulesTable(TableName(4242, 987654))} {
		pid, st, ok := ParseTableName(name)
		if !ok || pid != 4242 || st != 987654 {
			t.Fatalf("ParseTableName(%q) = %d, %d, %v", name, pid, st, ok)
		}
	}
	for _, bad := range []string{"tether-deadbeef", "tether-", "tether-1", "tether-x-2", "other-1-2", "tether--1-2", "tether-1-2-other", "tether-1-rules"} {
		if _, _, ok := ParseTableName(bad); ok {
			t.Errorf("ParseTableName(%q) accepted", bad)
		}
	}
}

func TestStale(t *testing.T) {
	live := map[int]uint64{100: 5000}
	startTimeOf := func(pid int) (uint64, bool) {
		st, ok := live[pid]
		return st, ok
	}
	tests := []struct {
		name string
		want bool
	}{
		{TableName(100, 5000), false}, // its agent is alive
		{RulesTable(TableName(100, 5000)), false},
		{RulesTable(TableName(200, 5000)), true},
		{TableName(100, 4000), true}, // pid reused by another process
		{TableName(200, 5000), true}, // owner gone
		{"tether-deadbeef", true},    // not ours in this format: stale
		{"filter", false},            // not a tether table at all
	}
	for _, tt := range tests {
		if got := Stale(tt.name, startTimeOf); got != tt.want {
			t.Errorf("Stale(%q) = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestFake(t *testing.T) {
	f := NewFake()
	f.Redirect(80, 4000)
	f.Redirect(80, 4001)
	f.Redirect(443, 4001)
	f.Unredirect(443)
	if got := f.Ports(); len(got) != 1 || got[80] != 4001 {
		t.Fatalf("rules = %v", got)
	}
	f.Close()
	if err := f.Redirect(1, 2); err == nil {
		t.Fatal("Redirect after Close succeeded")
	}
}
