package app

import (
	"sync"
	"time"
)

// Limiter counts failures per key (a username, a client address) in a
// sliding window and refuses a key that has reached Max failures until the
// oldest of them leaves the window. Successes do not count. It lives in
// memory, per node.
type Limiter struct {
	Max    int
	Window time.Duration

	mu       sync.Mutex
	failures map[string][]time.Time
	now      func() time.Time
	lastGC   time.Time
}

// NewLimiter allows max failures per key within window.
func NewLimiter(max int, window time.Duration) *Limiter {
	return &Limiter{Max: max, Window: window, failures: map[string][]time.Time{}, now: time.Now}
}

// Check returns 0 when key may try again now, else how long it must wait.
func (l *Limiter) Check(key string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	fs := l.prune(key, now)
	if len(fs) < l.Max {
		return 0
	}
	return fs[0].Add(l.Window).Sub(now)
}

// Fail records a failure for key.
func (l *Limiter) Fail(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	fs := l.prune(key, now)
	if len(fs) >= l.Max {
		fs = fs[1:]
	}
	l.failures[key] = append(fs, now)
	if now.Sub(l.lastGC) > l.Window {
		l.lastGC = now
		for k := range l.failures {
			l.prune(k, now)
		}
	}
}

// prune drops failures that left the window; l.mu must be held.
func (l *Limiter) prune(key string, now time.Time) []time.Time {
	fs := l.failures[key]
	i := 0
	for i < len(fs) && now.Sub(fs[i]) >= l.Window {
		i++
	}
	if i == len(fs) {
		delete(l.failures, key)
		return nil
	}
	if i > 0 {
		fs = fs[i:]
		l.failures[key] = fs
	}
	return fs
}
