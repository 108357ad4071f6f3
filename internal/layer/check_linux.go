package layer

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// What Check reads from the machine; tests replace them to play an old
// kernel or one without seccomp user notification.
var (
	kernelRelease = func() (string, error) {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return "", err
		}
		return unix.ByteSliceToString(u.Release[:]), nil
	}
	seccompActionsFile = "/proc/sys/kernel/seccomp/actions_avail"
)

// Check verifies this machine can run the supervisor and returns a clear,
// actionable error when it cannot.
func Check() error {
	rel, err := kernelRelease()
	if err != nil {
		return fmt.Errorf("reading the kernel version: %w", err)
	}
	if err := checkKernel(rel); err != nil {
		return err
	}
	avail, err := os.ReadFile(seccompActionsFile)
	if err != nil {
		return fmt.Errorf("seccomp is not available (%v): tether needs a kernel built with CONFIG_SECCOMP_FILTER; run on a regular Linux kernel, outside gVisor", err)
	}
	return checkActions(string(avail))
}
