package layer

import (
	"fmt"
	"strconv"
	"strings"
)

// MinKernel is the oldest kernel the supervisor supports: 5.19 brought
// SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, without which injected fds leak
// when a signal interrupts a trapped call.
var MinKernel = [2]int{5, 19}

// parseKernelRelease extracts major.minor from a uname release string such
// as "6.1.0-18-amd64" or "5.15.0-1051-azure".
func parseKernelRelease(rel string) (major, minor int, err error) {
	bad := func() error {
		return fmt.Errorf("unrecognised kernel release %q: tether needs Linux %d.%d or newer and cannot tell this kernel's version (uname -r should print MAJOR.MINOR...)", rel, MinKernel[0], MinKernel[1])
	}
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return 0, 0, bad()
	}
	major, err = strconv.Atoi(parts[0])
	if err != nil {
		return 0, 0, bad()
	}
	i := 0
	for i < len(parts[1]) && parts[1][i] >= '0' && parts[1][i] <= '9' {
		i++
	}
	minor, err = strconv.Atoi(parts[1][:i])
	if err != nil {
		return 0, 0, bad()
	}
	return major, minor, nil
}

// checkKernel returns a user-facing error when release is older than MinKernel.
func checkKernel(release string) error {
	major, minor, err := parseKernelRelease(release)
	if err != nil {
		return err
	}
	if major < MinKernel[0] || (major == MinKernel[0] && minor < MinKernel[1]) {
		return fmt.Errorf("kernel Linux %d.%d is too old: tether needs Linux %d.%d or newer for seccomp user notification (WAIT_KILLABLE_RECV); run on a newer kernel (Debian 12 backports, Ubuntu 22.04 HWE or later)",
			major, minor, MinKernel[0], MinKernel[1])
	}
	return nil
}

// checkActions returns a user-facing error when the kernel's seccomp
// actions (from /proc/sys/kernel/seccomp/actions_avail) lack user_notif.
func checkActions(avail string) error {
	for _, a := range strings.Fields(avail) {
		if a == "user_notif" {
			return nil
		}
	}
	return fmt.Errorf("seccomp user notification is not available (actions: %q): tether needs a kernel built with CONFIG_SECCOMP_FILTER; run on a regular Linux kernel, outside gVisor and without another seccomp supervisor", strings.TrimSpace(avail))
}
