package layer

import "testing"

func TestProcFDPattern(t *testing.T) {
	for _, c := range []struct {
		p        string
		ok       bool
		who, tid string
		fd       string
	}{
		{"/proc/self/fd/5", true, "self", "", "5"},
		{"/proc/thread-self/fd/12", true, "thread-self", "", "12"},
		{"/proc/1234/fd/3", true, "1234", "", "3"},
		{"/proc/1234/task/1240/fd/3", true, "1234", "1240", "3"},
		{"/proc/self/fdinfo/5", false, "", "", ""},
		{"/proc/self/fd/", false, "", "", ""},
		{"/proc/self/fd/5/x", false, "", "", ""},
		{"/proc/self/cwd", false, "", "", ""},
	} {
		m := procFD.FindStringSubmatch(c.p)
		if (m != nil) != c.ok {
			t.Errorf("%s: match %v, want %v", c.p, m != nil, c.ok)
			continue
		}
		if m != nil && (m[1] != c.who || m[2] != c.tid || m[3] != c.fd) {
			t.Errorf("%s: %q", c.p, m[1:])
		}
	}
}
