//go:build linux && !amd64 && !arm64

package layer

// The supervisor supports the architectures with an arch_GOARCH.go file.
// Elsewhere the package builds but the filter refuses to install.
const (
	auditArch = 0
	hasX32    = false
)

var legacyTrapped []uint32

func normalize(*seccompData) {}
