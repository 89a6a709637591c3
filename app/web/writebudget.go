package web

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"notesync/app"
)

// WriteBudget is how fast one user may write notes (docs/PROTOCOL.md §8):
// a token bucket per user that holds Burst writes and refills at Rate a
// second. It lives in memory on the node that serves writes, the primary:
// a replica forwards a write before it reaches the budget, so a write is
// counted once, where it is applied.
type WriteBudget struct {
	Rate  float64 // writes a second; 0: no budget
	Burst int

	mu      sync.Mutex
	buckets map[int64]*bucket
	now     func() time.Time
	lastGC  time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// budgetGC is how often buckets that have refilled are forgotten.
const budgetGC = time.Minute

// take spends one write of userID's budget, or returns how long until one
// is there.
func (b *WriteBudget) take(userID int64) time.Duration {
	if b.Rate <= 0 {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if b.now != nil {
		now = b.now()
	}
	if b.buckets == nil {
		b.buckets = map[int64]*bucket{}
	}
	if now.Sub(b.lastGC) >= budgetGC {
		b.lastGC = now
		for id, k := range b.buckets {
			if b.refill(k, now) >= float64(b.Burst) {
				delete(b.buckets, id)
			}
		}
	}
	k := b.buckets[userID]
	if k == nil {
		k = &bucket{tokens: float64(b.Burst), at: now}
		b.buckets[userID] = k
	}
	if b.refill(k, now) < 1 {
		return time.Duration((1 - k.tokens) / b.Rate * float64(time.Second))
	}
	k.tokens--
	return 0
}

// refill adds what the bucket earned since it was last seen.
func (b *WriteBudget) refill(k *bucket, now time.Time) float64 {
	k.tokens = min(float64(b.Burst), k.tokens+now.Sub(k.at).Seconds()*b.Rate)
	k.at = now
	return k.tokens
}

// budgeted spends a write of the user's budget before h, or answers 429
// with Retry-After and words a person reads.
func (s *Server) budgeted(h func(http.ResponseWriter, *http.Request, *User)) func(http.ResponseWriter, *http.Request, *User) {
	return func(w http.ResponseWriter, r *http.Request, u *User) {
		if s.WriteBudget == nil {
			h(w, r, u)
			return
		}
		if wait := s.WriteBudget.take(u.ID); wait > 0 {
			s.writeError(w, r, &app.Error{Code: app.ETOOMANY, RetryAfter: retryAfter(wait),
				Message: fmt.Sprintf("You are saving changes faster than %s a second. Wait %s and try again.",
					strconv.FormatFloat(s.WriteBudget.Rate, 'f', -1, 64), seconds(wait))})
			return
		}
		h(w, r, u)
	}
}

// seconds writes d as whole seconds, rounded up, in words.
func seconds(d time.Duration) string {
	n := max(1, int(math.Ceil(d.Seconds())))
	if n == 1 {
		return "a second"
	}
	return strconv.Itoa(n) + " seconds"
}
