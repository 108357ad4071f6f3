//go:build tools

// Package tools pins the versions of developer tools (staticcheck) in a
// module of their own, so they never enter the product's dependencies.
package tools

import _ "honnef.co/go/tools/cmd/staticcheck"
