//go:build !linux

package main

import "time"

var started = time.Now()

// threadCPU is wall time where the thread's CPU clock is not read: the
// benchmarks run on Linux.
func threadCPU() time.Duration { return time.Since(started) }
