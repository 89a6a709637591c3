package app

import "strconv"

// Usage is what one user's notes take: how many, and their bodies' bytes
// (UTF-8).
type Usage struct {
	Notes int64
	Bytes int64
}

// Quota bounds what one user's notes may take (docs/PROTOCOL.md §8). A zero
// field sets no bound.
type Quota struct {
	Notes int64
	Bytes int64
}

// Check refuses a write that took a user from before to after: ETOOLARGE,
// in words that say what to do, when it leaves the user over a bound and
// grew what that bound counts. A write that shrinks (a delete, a shorter
// body) always passes, so that a user over a lowered quota can make room.
func (q Quota) Check(before, after Usage) error {
	if q.Notes > 0 && after.Notes > q.Notes && after.Notes > before.Notes {
		return Errorf(ETOOLARGE, "You have %s notes, the most one account may keep. Delete some to make room for new ones.", thousands(int(q.Notes)))
	}
	if q.Bytes > 0 && after.Bytes > q.Bytes && after.Bytes > before.Bytes {
		return Errorf(ETOOLARGE, "Your notes would take more than %s, the most one account may keep. Shorten or delete some to make room.", megabytes(q.Bytes))
	}
	return nil
}

// megabytes writes n bytes in MB (10^6 bytes), as a person reads it.
func megabytes(n int64) string {
	return strconv.FormatFloat(float64(n)/1e6, 'f', -1, 64) + " MB"
}
