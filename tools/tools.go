//go:build tools

// Package tools pins the versions of developer tools in a module of their
// own, so they never enter the product's dependencies: staticcheck, and
// goaws (the local cluster's stand-in for Amazon SQS, in an image of
// hack/images.sh).
package tools

import (
	_ "github.com/Admiral-Piett/goaws/app/cmd"
	_ "honnef.co/go/tools/cmd/staticcheck"
)
