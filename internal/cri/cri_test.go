package cri

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const id = "3f9a2c1b7d8e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6d7e8f9a"

// fakeProc writes /proc-like entries: pid -> (ppid, cgroup).
func fakeProc(t *testing.T, procs map[int][2]string) string {
	t.Helper()
	root := t.TempDir()
	for pid, v := range procs {
		d := filepath.Join(root, strconv.Itoa(pid))
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "stat"), []byte(strconv.Itoa(pid)+" (x y) S "+v[0]+" 1 1 0\n"), 0o644)
		os.WriteFile(filepath.Join(d, "cgroup"), []byte(v[1]), 0o644)
	}
	os.MkdirAll(filepath.Join(root, "self"), 0o755)
	return root
}

func TestFindPID(t *testing.T) {
	cg := "0::/kubepods/besteffort/pod1234/" + id + "\n"
	root := fakeProc(t, map[int][2]string{
		1:   {"0", "0::/init.scope\n"},
		500: {"1", "0::/system.slice/containerd.service\n"},   // the shim
		501: {"500", cg},                                      // container init
		502: {"501", cg},                                      // its child
		900: {"500", "0::/kubepods/besteffort/pod99/other\n"}, // another container
	})
	pid, err := FindPID(root, "containerd://"+id)
	if err != nil || pid != 501 {
		t.Fatalf("FindPID = %d, %v; want 501", pid, err)
	}
	if _, err := FindPID(root, "containerd://"+strings.Repeat("a", 64)); err == nil || !strings.Contains(err.Error(), "hostPID") {
		t.Fatalf("missing container: %v", err)
	}
	if _, err := FindPID(root, "docker://xyz"); err == nil {
		t.Fatal("bad id accepted")
	}
}

func TestParseContainerID(t *testing.T) {
	rt, got, err := ParseContainerID("containerd://" + id)
	if err != nil || rt != "containerd" || got != id {
		t.Fatalf("= %q %q %v", rt, got, err)
	}
	if _, got, err := ParseContainerID(id); err != nil || got != id {
		t.Fatalf("bare id: %q %v", got, err)
	}
}
