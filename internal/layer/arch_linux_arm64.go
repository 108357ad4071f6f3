package layer

import "golang.org/x/sys/unix"

// auditArch is the only ABI the filter lets through (a 32-bit arm process
// under an arm64 kernel would bypass every check).
const auditArch = unix.AUDIT_ARCH_AARCH64

// hasX32 is false: arm64 has no x32-style syscall numbering.
const hasX32 = false

// legacyTrapped is empty: arm64 has only the *at path syscalls.
var legacyTrapped []uint32

// normalize has nothing to rewrite on arm64.
func normalize(*seccompData) {}
