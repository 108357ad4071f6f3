package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Failure kinds of an unmatched request, from the client's side. The fault
// tests bound each by the same fault's no-tether baseline.
const (
	kindReset       = "reset"       // ECONNRESET or EPIPE: the peer aborted the connection
	kindRefused     = "refused"     // ECONNREFUSED: a SYN that met no listener
	kindUnreachable = "unreachable" // EHOSTUNREACH, ENETUNREACH: a pod address that is gone
	kindEOF         = "eof"         // the connection ended before a whole answer
	kindTimeout     = "hung"        // no answer within the client's timeout
	kindWrong       = "wrong"       // an answer, but not the deployed app's
	kindOther       = "other"
)

// kindOf classifies a failed request's error.
func kindOf(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return kindReset
	case errors.Is(err, syscall.ECONNREFUSED):
		return kindRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return kindUnreachable
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return kindEOF
	case errors.As(err, &ne) && ne.Timeout():
		return kindTimeout
	}
	return kindOther
}

// clients is the number of load clients: each has one request at a time.
const clients = 2

// load sends unmatched requests (no filter header) to a URL the whole
// time from two clients, a new connection each, and counts every outcome
// per phase (see setPhase) and failure kind.
type load struct {
	url, want string
	user      string // the filter header's value ("": none)
	client    *http.Client
	phase     atomic.Pointer[string]
	mu        sync.Mutex
	counts    map[string]*phaseCount // by phase
	order     []string
	stop      chan struct{}
	stopOnce  sync.Once
	done      sync.WaitGroup
	// death is when a process the test killed died (zero: none).
	death death
}

// death is the moment a process carrying the load's connections (the
// agent, the app) was killed: from the signal until all its threads had
// exited. A request in flight then dies with the process, with or
// without tether.
type death struct{ from, to time.Time }

// carried reports whether failure f is a reset or EOF of a request in
// flight at the death: sent before the process was gone and ended after
// it was signalled.
func (d death) carried(f failure) bool {
	return !d.to.IsZero() && (f.kind == kindReset || f.kind == kindEOF) && f.sent.Before(d.to) && !f.ended.Before(d.from)
}

// phaseCount is what happened to the requests sent in one phase.
type phaseCount struct {
	sent    int64
	byKind  map[string]int64
	samples []string // the first failures, for the test's message
	began   time.Time
	// first and last failure of each kind, from the phase's start
	first, last map[string]time.Duration
	fails       []failure
	oks         []time.Time // when each answered request was sent
	death       death       // see load.died
}

// failure is one failed request: its kind, when it was sent and when it
// failed.
type failure struct {
	kind        string
	sent, ended time.Time
}

// gone is when the first request of the phase found the app gone (no
// listener, no address): the app had died by then. Zero if none did.
func (p *phaseCount) gone() time.Time {
	var t time.Time
	for _, f := range p.fails {
		if (f.kind == kindRefused || f.kind == kindUnreachable) && (t.IsZero() || f.sent.Before(t)) {
			t = f.sent
		}
	}
	return t
}

// atDeath counts the resets and EOFs of requests sent before the app was
// found gone: in flight when it died, they fail with or without tether;
// and those of requests in flight when the test killed a process that
// carried them (load.died).
func (p *phaseCount) atDeath() int64 {
	var n int64
	for _, f := range p.fails {
		if p.inFlightAtDeath(f) {
			n++
		}
	}
	return n
}

// inFlightAtDeath reports whether failure f is a reset or EOF of a request
// sent before the app was found gone or in flight at a death the test
// caused.
func (p *phaseCount) inFlightAtDeath(f failure) bool {
	if f.kind != kindReset && f.kind != kindEOF {
		return false
	}
	g := p.gone()
	return (!g.IsZero() && f.sent.Before(g)) || p.death.carried(f)
}

// downtime is the app's own downtime in the phase: from the first request
// that found it gone until the first one sent after that was answered
// (the phase's end if none was). Zero times if no request found it gone.
func (p *phaseCount) downtime() (from, to time.Time) {
	from = p.gone()
	if from.IsZero() {
		return from, from
	}
	to = time.Now()
	for _, t := range p.oks {
		if t.After(from) && t.Before(to) {
			to = t
		}
	}
	return from, to
}

// hungInDowntime counts the hung requests sent in the app's own downtime:
// a SYN that reached the dying pod as its network went away (the Service
// still sends new connections there for a moment) gets no answer at all,
// with or without tether, where a moment earlier it was refused.
func (p *phaseCount) hungInDowntime() int64 {
	from, to := p.downtime()
	var n int64
	for _, f := range p.fails {
		if f.kind == kindTimeout && !from.IsZero() && !f.sent.Before(from) && f.sent.Before(to) {
			n++
		}
	}
	return n
}

// afterDeath is the count of kind in the phase, without atDeath's (resets
// and EOFs) or hungInDowntime's (hung requests).
func (p *phaseCount) afterDeath(kind string) int64 {
	from, to := p.downtime()
	var n int64
	for _, f := range p.fails {
		if f.kind != kind {
			continue
		}
		switch {
		case p.inFlightAtDeath(f):
		case kind == kindTimeout && !from.IsZero() && !f.sent.Before(from) && f.sent.Before(to):
		default:
			n++
		}
	}
	return n
}

func (p *phaseCount) failed() int64 {
	var n int64
	for _, c := range p.byKind {
		n += c
	}
	return n
}

// startLoad waits until url answers want, then sends requests until the
// test ends or result is called. Its phase is "before" until setPhase.
func startLoad(t *testing.T, url, want string) *load {
	t.Helper()
	return startLoadUser(t, url, "", want)
}

// startLoadUser is startLoad for requests with the filter header
// x-tether-user: user.
func startLoadUser(t *testing.T, url, user, want string) *load {
	t.Helper()
	l := &load{url: url, want: want, user: user, counts: map[string]*phaseCount{}, stop: make(chan struct{}),
		client: &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}}
	l.setPhase("before")
	waitServed(t, url, user, want)
	for range clients {
		l.done.Add(1)
		go l.run()
	}
	t.Cleanup(l.end)
	return l
}

// waitServed waits until url answers want: a new Service needs a moment.
func waitServed(t *testing.T, url, user, want string) {
	t.Helper()
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		body, err := get(c, url, user)
		if err == nil && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer from %s: %q %v", url, body, err)
		}
	}
}

// died tells the load that the test killed a process that carries its
// requests (the agent, the app) at from and that all its threads had
// exited at to (some moments later): the requests it carried then (a
// reset or an EOF, sent before to and ended after from) die with any
// process that carries a connection, and count as atDeath's.
func (l *load) died(from, to time.Time) {
	l.mu.Lock()
	l.death = death{from, to}
	for _, pc := range l.counts {
		pc.death = l.death
	}
	l.mu.Unlock()
}

// setPhase makes the requests sent from now on count in phase.
func (l *load) setPhase(phase string) {
	l.mu.Lock()
	if l.counts[phase] == nil {
		l.counts[phase] = &phaseCount{byKind: map[string]int64{}, began: time.Now(), first: map[string]time.Duration{}, last: map[string]time.Duration{}, death: l.death}
		l.order = append(l.order, phase)
	}
	l.mu.Unlock()
	l.phase.Store(&phase)
}

func (l *load) run() {
	defer l.done.Done()
	for {
		select {
		case <-l.stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		phase := *l.phase.Load()
		start := time.Now()
		body, err := get(l.client, l.url, l.user)
		kind := ""
		switch {
		case err != nil:
			kind = kindOf(err)
		case !strings.Contains(body, l.want):
			kind, err = kindWrong, fmt.Errorf("answer %q, want %q", body, l.want)
		}
		l.mu.Lock()
		pc := l.counts[phase]
		pc.sent++
		if kind == "" {
			pc.oks = append(pc.oks, start)
		} else {
			at := start.Sub(pc.began)
			if pc.byKind[kind] == 0 {
				pc.first[kind] = at
			}
			pc.last[kind] = at
			pc.byKind[kind]++
			pc.fails = append(pc.fails, failure{kind, start, time.Now()})
			if len(pc.samples) < 5 {
				pc.samples = append(pc.samples, fmt.Sprintf("%s %s (sent %s): %v", phase, kind, start.Format("15:04:05.000"), err))
			}
		}
		l.mu.Unlock()
	}
}

func (l *load) end() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.done.Wait()
}

// loadResult is a load's counts, by phase in the order they began.
type loadResult struct {
	phases []string
	counts map[string]*phaseCount
}

// result stops the load and returns its counts.
func (l *load) result() loadResult {
	l.end()
	l.mu.Lock()
	defer l.mu.Unlock()
	return loadResult{phases: l.order, counts: l.counts}
}

func (r loadResult) sent() int64 {
	var n int64
	for _, c := range r.counts {
		n += c.sent
	}
	return n
}

// kind is the number of failures of kind in phase.
func (r loadResult) kind(phase, kind string) int64 {
	if c := r.counts[phase]; c != nil {
		return c.byKind[kind]
	}
	return 0
}

func (r loadResult) failed() int64 {
	var n int64
	for _, c := range r.counts {
		n += c.failed()
	}
	return n
}

// samples returns the first failures of every phase.
func (r loadResult) samples() []string {
	var out []string
	for _, p := range r.phases {
		out = append(out, r.counts[p].samples...)
	}
	return out
}

// String is "phase: sent N, kind K, ..." for every phase.
func (r loadResult) String() string {
	var parts []string
	for _, p := range r.phases {
		c := r.counts[p]
		s := fmt.Sprintf("%s: %d sent", p, c.sent)
		kinds := make([]string, 0, len(c.byKind))
		for k := range c.byKind {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			s += fmt.Sprintf(", %d %s (%.2f-%.2fs)", c.byKind[k], k, c.first[k].Seconds(), c.last[k].Seconds())
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// exceeding compares r with a baseline of the same fault without tether,
// phase by phase, and returns one line per excess:
//   - refused and unreachable (the app or its pod is gone: its own
//     downtime, whose length tether does not set) only where the
//     baseline's phase shows the same kind;
//   - resets and EOFs at most as many as in the baseline's phase, not
//     counting those of requests in flight when the app died (sent before
//     a request found it gone), which fail with or without tether, nor
//     those in flight when the test killed the agent or the app
//     (load.died), no more than one per client (each has one request at
//     a time);
//   - hung requests sent in the app's own downtime (hungInDowntime) only
//     where the baseline's phase shows that downtime too;
//   - any other hung request, wrong answers and other errors never.
func (r loadResult) exceeding(base loadResult) []string {
	var out []string
	if n := r.atKilledDeath(); n > clients {
		out = append(out, fmt.Sprintf("%d requests failed as in flight at the killed process's death, more than the %d clients can have", n, clients))
	}
	for _, p := range r.phases {
		c := r.counts[p]
		bc := base.counts[p]
		for k := range c.byKind {
			n := c.afterDeath(k)
			var allowed int64
			switch k {
			case kindRefused, kindUnreachable:
				allowed = n
				if base.kind(p, k) == 0 {
					allowed = 0
				}
			case kindReset, kindEOF:
				if bc != nil {
					allowed = bc.afterDeath(k)
				}
			case kindTimeout:
				if c.hungInDowntime() > 0 && base.kind(p, kindRefused)+base.kind(p, kindUnreachable) == 0 {
					out = append(out, fmt.Sprintf("%s: %d hung in the app's downtime, which the baseline does not show", p, c.hungInDowntime()))
				}
			}
			if n > allowed {
				out = append(out, fmt.Sprintf("%s: %d %s (baseline %d)", p, n, k, base.kind(p, k)))
			}
		}
	}
	sort.Strings(out)
	return out
}

// hungInDowntime is the number of hung requests sent in the app's own
// downtime.
func (r loadResult) hungInDowntime() int64 {
	var n int64
	for _, c := range r.counts {
		n += c.hungInDowntime()
	}
	return n
}

// atKilledDeath is the number of requests that failed as in flight when
// the test killed a process (load.died).
func (r loadResult) atKilledDeath() int64 {
	var n int64
	for _, c := range r.counts {
		for _, f := range c.fails {
			if c.death.carried(f) {
				n++
			}
		}
	}
	return n
}

// atDeath is the number of requests in flight when the app died.
func (r loadResult) atDeath() int64 {
	var n int64
	for _, c := range r.counts {
		n += c.atDeath()
	}
	return n
}

// get sends one GET (with the filter header when user is set) and returns
// the body.
func get(c *http.Client, url, user string) (string, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return "", err
	}
	if user != "" {
		req.Header.Set("x-tether-user", user)
	}
	var local string
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(ci httptrace.GotConnInfo) { local = ci.Conn.LocalAddr().String() },
	}))
	resp, err := c.Do(req)
	if err != nil {
		if local != "" {
			err = fmt.Errorf("%w (from %s)", err, local)
		}
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("status %s: %q (headers %v)", resp.Status, b, resp.Header)
	}
	return string(b), nil
}
