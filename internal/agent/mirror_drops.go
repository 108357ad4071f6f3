package agent

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tether-dev/tether/internal/protocol"
)

// mirrorDrops is a subscription's mirror copies: the bytes queued for
// it, its rate bound, and the copies left out.
type mirrorDrops struct {
	queued atomic.Int64
	rate   *copyRate // nil: no bound
	// dropped: left out because the session was behind; limited: over
	// the rate bound. reported is the total the session was last told of.
	dropped, limited, reported atomic.Int64
	reportDue                  atomic.Bool
}

func newMirrorDrops(perSec int) *mirrorDrops {
	if perSec == 0 {
		perSec = protocol.DefaultMirrorRate
	}
	d := &mirrorDrops{}
	if perSec > 0 {
		d.rate = newCopyRate(perSec)
	}
	return d
}

// mirrorDropped counts a request (or connection) not copied to the
// session because it was behind; it hears of it within mirrorReportEvery.
func (s *subscription) mirrorDropped(in *incoming) {
	s.drops.dropped.Add(1)
	s.reportDrops(in)
}

// mirrorLimited counts a request not copied because of the rate bound.
func (s *subscription) mirrorLimited(in *incoming) {
	s.drops.limited.Add(1)
	s.reportDrops(in)
}

func (s *subscription) reportDrops(in *incoming) {
	d := s.drops
	if !d.reportDue.CompareAndSwap(false, true) {
		return
	}
	time.AfterFunc(mirrorReportEvery, func() {
		d.reportDue.Store(false)
		behind, limited := d.dropped.Load(), d.limited.Load()
		total := behind + limited
		n := total - d.reported.Swap(total)
		in.log.Info("mirror copies left out", "session", s.sess.id, "port", s.port, "count", n, "total", total, "behind", behind, "over_rate", limited)
		var why []string
		if limited > 0 {
			why = append(why, fmt.Sprintf("%d over incoming.mirror_rate (%d per second; 0 copies all)", limited, d.rate.perSec))
		}
		if behind > 0 {
			why = append(why, fmt.Sprintf("%d because your side did not keep up with the traffic", behind))
		}
		in.notify(s.sess, fmt.Sprintf("mirror: %d requests to port %d were not copied to you in the last %s (%d since you subscribed): %s; the deployed app was not slowed",
			n, s.port, mirrorReportEvery, total, strings.Join(why, ", ")))
	})
}

// copyRate is a token bucket: perSec copies a second, in bursts of at
// most a tenth of that (at least one).
type copyRate struct {
	perSec int
	mu     sync.Mutex
	tokens float64
	burst  float64
	last   time.Time
}

func newCopyRate(perSec int) *copyRate {
	burst := max(1, float64(perSec)/10)
	return &copyRate{perSec: perSec, tokens: burst, burst: burst}
}

// take reports whether a copy may start at now (and counts it).
func (r *copyRate) take(now time.Time) bool {
	if r == nil {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() {
		r.tokens = min(r.burst, r.tokens+now.Sub(r.last).Seconds()*float64(r.perSec))
	}
	r.last = now
	if r.tokens < 1 {
		return false
	}
	r.tokens--
	return true
}
