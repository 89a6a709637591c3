package web

import (
	"sync"
	"time"
)

// Limiter limits attempts per key (a username, a client address, both) in
// a sliding window. An attempt reserves its place under every rule that
// applies before it runs, all at once or not at all, so attempts made in
// parallel cannot overrun a limit; it settles the reservation once its
// outcome is known: a failure stays counted for Window, a success is
// refunded. It lives in memory, per node.
type Limiter struct {
	Window time.Duration

	mu     sync.Mutex
	keys   map[string]*attempts
	now    func() time.Time
	lastGC time.Time
}

// attempts is what a Limiter knows of one key.
type attempts struct {
	failed   []time.Time // failures within the window, oldest first
	inflight int         // reserved, not settled yet
	next     time.Time   // Slow rules: when the next attempt may start
}

// Rule limits the attempts of one key. Attempts in flight count as
// failures until they settle.
//
// A hard rule (Slow zero) refuses the key once Max attempts count, until
// the oldest failure leaves the window. A slow rule never shuts the key
// out: past Max it spaces attempts, the k-th one past Max starting at least
// Slow·2^(k-1) (at most slowCap) after the one before.
type Rule struct {
	Key  string
	Max  int
	Slow time.Duration
}

// slowCap bounds the spacing of a slow rule: however many guesses were
// made against it, the key's owner waits at most this long.
const slowCap = time.Minute

// maxKept bounds the failures remembered per key; past it, the oldest are
// forgotten (a slow rule's spacing is at its cap long before).
const maxKept = 64

// NewLimiter returns a limiter counting failures within window.
func NewLimiter(window time.Duration) *Limiter {
	return &Limiter{Window: window, keys: map[string]*attempts{}, now: time.Now}
}

// Reservation is a place taken by Reserve; settle it exactly once.
type Reservation struct {
	l    *Limiter
	keys []string
}

// Reserve takes a place under every rule, or under none and returns how
// long to wait before trying again.
func (l *Limiter) Reserve(rules ...Rule) (*Reservation, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	l.gc(now)
	counts := make([]int, len(rules))
	var wait time.Duration
	for i, r := range rules {
		a := l.prune(r.Key, now)
		if a == nil {
			continue
		}
		counts[i] = len(a.failed) + a.inflight
		switch {
		case counts[i] < r.Max:
		case r.Slow == 0 && len(a.failed) > 0:
			wait = max(wait, a.failed[0].Add(l.Window).Sub(now), time.Second)
		case r.Slow == 0:
			wait = max(wait, time.Second) // only attempts in flight: they settle within moments
		case now.Before(a.next):
			wait = max(wait, a.next.Sub(now))
		}
	}
	if wait > 0 {
		return nil, wait
	}
	res := &Reservation{l: l, keys: make([]string, len(rules))}
	for i, r := range rules {
		a := l.keys[r.Key]
		if a == nil {
			a = &attempts{}
			l.keys[r.Key] = a
		}
		a.inflight++
		if r.Slow > 0 && counts[i] >= r.Max {
			a.next = now.Add(min(r.Slow<<min(counts[i]-r.Max, 16), slowCap))
		}
		res.keys[i] = r.Key
	}
	return res, 0
}

// Settle ends the attempt: a failure is counted for the window, a success
// is not.
func (res *Reservation) Settle(failed bool) {
	l := res.l
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for _, k := range res.keys {
		a := l.keys[k]
		if a == nil {
			continue
		}
		a.inflight--
		if failed {
			a.fail(now)
		}
		l.prune(k, now)
	}
}

// Fail counts a failure against key now, outside any reservation: what an
// attempt refused without being tried costs whoever sent it.
func (l *Limiter) Fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.keys[key]
	if a == nil {
		a = &attempts{}
		l.keys[key] = a
	}
	a.fail(l.now())
}

// Failures is how many failures of key are within the window.
func (l *Limiter) Failures(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if a := l.prune(key, l.now()); a != nil {
		return len(a.failed)
	}
	return 0
}

// fail remembers a failure at now, forgetting the oldest past maxKept.
func (a *attempts) fail(now time.Time) {
	if len(a.failed) >= maxKept {
		a.failed = a.failed[1:]
	}
	a.failed = append(a.failed, now)
}

// prune drops failures that left the window, and the key once nothing of
// it is left; l.mu must be held.
func (l *Limiter) prune(key string, now time.Time) *attempts {
	a := l.keys[key]
	if a == nil {
		return nil
	}
	i := 0
	for i < len(a.failed) && now.Sub(a.failed[i]) >= l.Window {
		i++
	}
	a.failed = a.failed[i:]
	if len(a.failed) == 0 && a.inflight == 0 && !now.Before(a.next) {
		delete(l.keys, key)
		return nil
	}
	return a
}

// gc prunes every key once per window; l.mu must be held.
func (l *Limiter) gc(now time.Time) {
	if now.Sub(l.lastGC) < l.Window {
		return
	}
	l.lastGC = now
	for k := range l.keys {
		l.prune(k, now)
	}
}
