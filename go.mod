module github.com/tether-dev/tether

go 1.26.8

require (
	github.com/hashicorp/yamux v0.1.2
	golang.org/x/sys v0.49.0
)
