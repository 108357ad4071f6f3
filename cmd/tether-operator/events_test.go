package main

import (
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
)

// countingSink counts the Events that reach the API (created, or
// patched into an aggregate).
type countingSink struct {
	mu sync.Mutex
	n  int
}

func (s *countingSink) add() (*corev1.Event, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	return &corev1.Event{}, nil
}
func (s *countingSink) Create(e *corev1.Event) (*corev1.Event, error) { return s.add() }
func (s *countingSink) Update(e *corev1.Event) (*corev1.Event, error) { return s.add() }
func (s *countingSink) Patch(e *corev1.Event, _ []byte) (*corev1.Event, error) {
	return s.add()
}

func (s *countingSink) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

// TestAuditEventsNotDropped: 100 sessions starting on one target in a
// minute are 100 Events (client-go's default filter lets 25 through),
// and a refusal after them still gets through.
func TestAuditEventsNotDropped(t *testing.T) {
	b := eventBroadcaster(t.Context())
	defer b.Shutdown()
	sink := &countingSink{}
	b.StartRecordingToSink(sink)
	rec := b.NewRecorder(clientgoscheme.Scheme, corev1.EventSource{Component: "tether-operator"})
	ref := &corev1.ObjectReference{Kind: "Deployment", APIVersion: "apps/v1", Namespace: "shop", Name: "web", UID: types.UID("u1")}
	const n = 100
	for i := range n {
		rec.Eventf(ref, corev1.EventTypeNormal, "TetherSessionStarted", "session %d of alice started", i)
	}
	rec.Eventf(ref, corev1.EventTypeWarning, "TetherRefused", "alice may not steal")
	for deadline := time.Now().Add(30 * time.Second); sink.count() < n+1 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
	}
	if got := sink.count(); got != n+1 {
		t.Fatalf("%d of %d Events reached the API", got, n+1)
	}
}
