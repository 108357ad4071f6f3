package main

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"testing"
)

// TestReportTargets: the worker's reports reach the parent's list, also
// after a garbage collection between them (the pipe's descriptor must stay
// the pipe's).
func TestReportTargets(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	t.Setenv(targetsFDEnv, strconv.Itoa(int(w.Fd())))
	reportTarget(123)
	runtime.GC()
	runtime.GC()
	reportTarget(456)
	w.Close() // the worker exits: its end closes
	var got targetPIDs
	got.read(r)
	if pids := got.list(); !slices.Equal(pids, []int{123, 456}) {
		t.Errorf("the parent read %v, want [123 456]", pids)
	}
}
