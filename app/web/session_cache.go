package web

import (
	"maps"
	"sync"
	"time"
)

// sessionCache keeps sessions read from the database for a short while, so
// that the requests of a burst (a page load, a tab's socket, a run of
// writes) read the sessions table once. Reading a session through LiteFS's
// FUSE layer costs a read transaction, with its file locks, per request.
//
// A session that ended (log-out here, or word from another node) is
// dropped and remembered as ended for endedTTL, so that a replica whose copy
// of the sessions table has not caught up with the log-out yet does not
// load it again. A node that missed the word accepts an ended session for
// at most ttl, plus its replica's lag.
type sessionCache struct {
	ttl time.Duration

	mu    sync.Mutex
	m     map[string]cachedSession
	ended map[string]time.Time // session id → until when it is known ended
	gen   uint64               // bumped by every drop; a load that raced one is not kept
}

type cachedSession struct {
	values map[any]any
	until  time.Time
}

const (
	// sessionCacheMax bounds the entries kept; past it, expired entries are
	// dropped, and if that is not enough, all of them.
	sessionCacheMax = 1 << 16
	// endedTTL is how long an ended session id is remembered: far longer
	// than a replica takes to receive the log-out.
	endedTTL = 10 * time.Minute
)

func newSessionCache(ttl time.Duration) *sessionCache {
	return &sessionCache{ttl: ttl, m: make(map[string]cachedSession), ended: make(map[string]time.Time)}
}

// get returns a copy of a cached session's values (callers may change
// them), or nil; ended reports a session known to have ended.
func (c *sessionCache) get(id string, now time.Time) (values map[any]any, ended bool) {
	c.mu.Lock()
	if until, ok := c.ended[id]; ok {
		if now.Before(until) {
			c.mu.Unlock()
			return nil, true
		}
		delete(c.ended, id)
	}
	e, ok := c.m[id]
	if ok && !now.Before(e.until) {
		delete(c.m, id)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	return maps.Clone(e.values), false
}

// generation is read before a database load and handed to put, so that a
// drop between the load and put wins.
func (c *sessionCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// put keeps values for id until now+ttl or expires, whichever is sooner,
// unless a drop happened since gen was read.
func (c *sessionCache) put(id string, values map[any]any, gen uint64, now, expires time.Time) {
	until := now.Add(c.ttl)
	if expires.Before(until) {
		until = expires
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if gen != c.gen {
		return
	}
	if len(c.m) >= sessionCacheMax {
		for k, e := range c.m {
			if !now.Before(e.until) {
				delete(c.m, k)
			}
		}
		if len(c.m) >= sessionCacheMax {
			clear(c.m)
		}
	}
	c.m[id] = cachedSession{values: maps.Clone(values), until: until}
}

// drop forgets id's cached values (they changed).
func (c *sessionCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, id)
}

// end drops id and remembers it as ended.
func (c *sessionCache) end(id string, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	delete(c.m, id)
	if len(c.ended) >= sessionCacheMax {
		for k, until := range c.ended {
			if !now.Before(until) {
				delete(c.ended, k)
			}
		}
	}
	c.ended[id] = now.Add(endedTTL)
}

// decodedCookies remembers session cookies whose signature checked out,
// keyed by the whole cookie, so that only a cookie that was verified can
// match. A nil *decodedCookies remembers nothing.
type decodedCookies struct {
	ttl time.Duration

	mu sync.Mutex
	m  map[string]decodedCookie
}

type decodedCookie struct {
	sc    sessionCookie
	until time.Time
}

// decodedCookiesMax bounds the cookies remembered; past it they are all
// forgotten.
const decodedCookiesMax = 1 << 15

func newDecodedCookies(ttl time.Duration) *decodedCookies {
	return &decodedCookies{ttl: ttl, m: make(map[string]decodedCookie)}
}

func (d *decodedCookies) get(value string, now time.Time) (sessionCookie, bool) {
	if d == nil {
		return sessionCookie{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	e, ok := d.m[value]
	if !ok || !now.Before(e.until) {
		return sessionCookie{}, false
	}
	return e.sc, true
}

func (d *decodedCookies) put(value string, sc sessionCookie, now time.Time) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.m) >= decodedCookiesMax {
		clear(d.m)
	}
	d.m[value] = decodedCookie{sc: sc, until: now.Add(d.ttl)}
}
