// Package netns runs code inside another Linux namespace (network or UTS)
// on a locked OS thread, so sockets created there belong to that namespace.
package netns

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn with the calling goroutine's OS thread switched into the
// namespace at nsPath (for example /proc/PID/ns/net or /var/run/netns/NAME).
// nstype is unix.CLONE_NEWNET or unix.CLONE_NEWUTS. Sockets created by fn
// stay in that namespace after Do returns. If the thread cannot be switched
// back, it is left locked so the Go runtime discards it.
func Do(nsPath string, nstype int, fn func() error) error {
	target, err := os.Open(nsPath)
	if err != nil {
		return fmt.Errorf("opening namespace %s: %w", nsPath, err)
	}
	defer target.Close()
	if same(target, nstype) {
		// Already there (an agent inside its target's pod): no setns, which
		// would need CAP_SYS_ADMIN for nothing.
		return fn()
	}
	runtime.LockOSThread()
	self := fmt.Sprintf("/proc/self/task/%d/ns/%s", unix.Gettid(), nsName(nstype))
	orig, err := os.Open(self)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening own namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), nstype); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering namespace %s: %w", nsPath, err)
	}
	ferr := fn()
	if err := unix.Setns(int(orig.Fd()), nstype); err != nil {
		// Keep the thread locked: it is in the wrong namespace and must die
		// with this goroutine.
		return fmt.Errorf("returning from namespace %s: %w", nsPath, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// same reports whether the namespace file ns is the caller's own namespace.
func same(ns *os.File, nstype int) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(ns.Fd()), &a) != nil || unix.Stat("/proc/thread-self/ns/"+nsName(nstype), &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

func nsName(nstype int) string {
	switch nstype {
	case unix.CLONE_NEWUTS:
		return "uts"
	case unix.CLONE_NEWNS:
		return "mnt"
	default:
		return "net"
	}
}
