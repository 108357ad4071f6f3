// Package version holds the build's version string, set at link time with
// -ldflags "-X github.com/tether-dev/tether/internal/version.Version=v1.2.3".
package version

// Version of this build ("dev" when built without ldflags).
var Version = "dev"
