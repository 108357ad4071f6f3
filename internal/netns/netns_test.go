package netns

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestDoOwnNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("setns needs CAP_SYS_ADMIN")
	}
	called := false
	err := Do("/proc/self/ns/net", unix.CLONE_NEWNET, func() error { called = true; return nil })
	if err != nil || !called {
		t.Fatalf("Do = %v, called=%v", err, called)
	}
}

func TestDoMissingNamespace(t *testing.T) {
	err := Do("/proc/0/ns/net", unix.CLONE_NEWNET, func() error { return nil })
	if err == nil {
		t.Fatal("want error for a missing namespace")
	}
}
