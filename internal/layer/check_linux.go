package layer

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Check verifies this machine can run the supervisor and returns a clear,
// actionable error when it cannot.
func Check() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("reading the kernel version: %w", err)
	}
	if err := checkKernel(unix.ByteSliceToString(u.Release[:])); err != nil {
		return err
	}
	avail, err := os.ReadFile("/proc/sys/kernel/seccomp/actions_avail")
	if err != nil {
		return fmt.Errorf("seccomp is not available: %w (tether needs a kernel built with CONFIG_SECCOMP_FILTER)", err)
	}
	return checkActions(string(avail))
}
