package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// Env is the shared fake cluster of one test binary: the services network
// namespace and one pod. Create it with Setup; Main tears it down.
type Env struct {
	// ID is the random suffix of this run's resource names.
	ID       string
	Dir      string // RunDir
	Services *Services
	Pod      *Pod

	clientOnce sync.Once
	client     *Client
	clientErr  error

	podAppOnce sync.Once
	podApp     *App
	podAppErr  error
}

var (
	envOnce sync.Once
	envVal  *Env
	envErr  error
)

// Setup returns the shared environment, creating it on first use. It calls
// Require first, so without TETHER_INTEGRATION=1 the test is skipped.
func Setup(t testing.TB) *Env {
	t.Helper()
	Require(t)
	dir := RunDir(t)
	envOnce.Do(func() { envVal, envErr = setupEnv(dir) })
	if envErr != nil {
		t.Fatalf("harness setup: %v", envErr)
	}
	return envVal
}

func setupEnv(dir string) (*Env, error) {
	var b [2]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	e := &Env{ID: id, Dir: dir}
	svc, err := newServicesNS(id)
	if err != nil {
		return nil, fmt.Errorf("services namespace: %w", err)
	}
	e.Services = svc
	pod, err := newPod(id, filepath.Join(dir, "pod"), svc)
	if err != nil {
		return nil, fmt.Errorf("pod: %w", err)
	}
	e.Pod = pod
	if err := svc.startServers(); err != nil {
		return nil, fmt.Errorf("services: %w", err)
	}
	if err := checkLocalFreeOfPodFiles(); err != nil {
		return nil, err
	}
	return e, nil
}

// checkLocalFreeOfPodFiles makes sure the negative checks mean something:
// the pod's files must not exist on this machine.
func checkLocalFreeOfPodFiles() error {
	if _, err := os.Stat("/app"); err == nil {
		return fmt.Errorf("/app exists on this machine; the file tests need it absent locally")
	}
	return nil
}
