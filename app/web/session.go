package web

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/base64"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/securecookie"
	"github.com/gorilla/sessions"

	"notesync/app/sqlite"
)

// SessionCookie is the name of the session cookie.
const SessionCookie = "notesync_session"

// SessionTTL is how long a session lasts after log-in.
const SessionTTL = 30 * 24 * time.Hour

// SessionStore is a gorilla/sessions Store that keeps sessions in the
// database, so that they replicate to every node and log-out ends a session
// everywhere. The cookie holds only the signed session id.
//
// Reading a session is a read: only Save (log-in, log-out) writes, so a
// read-only replica can authenticate requests on its own.
type SessionStore struct {
	store  *sqlite.Store
	codec  securecookie.Codec // signs new cookies; JSON inside
	legacy securecookie.Codec // reads cookies signed before, gob inside
	device securecookie.Codec // signs DeviceCookie
	// Options are the cookie options of new sessions. Secure is set per
	// request when it arrived over https.
	Options sessions.Options
	// IsPrimary, when set, tells whether this node's database is the
	// primary. On a replica, a fresh session (made within ReplicaWait) that
	// is not found yet is waited for up to ReplicaWait: it was made on the
	// primary a moment ago and is still replicating.
	IsPrimary   func() bool
	ReplicaWait time.Duration

	cache   *sessionCache   // nil: every request reads the database
	cookies *decodedCookies // nil: every request verifies its cookie
}

// CacheFor keeps sessions read from the database for up to ttl, so that a
// burst of requests reads the sessions table once. Log-out here, and
// MarkEnded (called when another node says a session ended), end a session
// here at once, even before this node's replica has the log-out; ttl bounds
// how long a node that missed that word still accepts it. Call it before
// serving.
func (st *SessionStore) CacheFor(ttl time.Duration) {
	st.cache = newSessionCache(ttl)
	st.cookies = newDecodedCookies(cookieCacheTTL)
}

// cookieCacheTTL is how long a verified cookie is remembered. The session
// it names is still looked up (and may have ended) on every request; a
// cookie past its own age limit is accepted at most this much longer, and
// the session row expires with it anyway.
const cookieCacheTTL = time.Minute

// MarkEnded tells the store that a session ended (on another node): it no
// longer authenticates here, whatever this node's database still holds.
func (st *SessionStore) MarkEnded(id string) {
	if st.cache != nil {
		st.cache.end(id, st.store.Now())
	}
}

// sessionCookie is what the cookie carries, signed: the session id, and when
// the session was made (to tell "not replicated yet" from "ended").
type sessionCookie struct {
	ID      string
	Created int64 // unix ms
}

var _ sessions.Store = (*SessionStore)(nil)

// NewSessionStore returns a store signing cookies with a key derived from
// secret (any length; at least 32 random bytes advised).
func NewSessionStore(store *sqlite.Store, secret []byte) *SessionStore {
	key := sha512.Sum512(append([]byte("notesync session cookie\x00"), secret...))
	// The cookie's content is serialized as JSON: gob, securecookie's
	// default, compiles a decoder for every cookie, which was a seventh of
	// a node's CPU while thousands of tabs reconnected. Cookies made
	// before are still read with gob.
	codec := securecookie.New(key[:], nil)
	codec.MaxAge(int(SessionTTL / time.Second))
	codec.SetSerializer(securecookie.JSONEncoder{})
	legacy := securecookie.New(key[:], nil)
	legacy.MaxAge(int(SessionTTL / time.Second))
	deviceKey := sha512.Sum512(append([]byte("notesync device cookie\x00"), secret...))
	device := securecookie.New(deviceKey[:], nil)
	device.MaxAge(int(deviceTTL / time.Second))
	device.SetSerializer(securecookie.JSONEncoder{})
	return &SessionStore{
		store:  store,
		codec:  codec,
		legacy: legacy,
		device: device,
		Options: sessions.Options{
			Path:     "/",
			MaxAge:   int(SessionTTL / time.Second),
			HttpOnly: true,
			SameSite: http.SameSiteLaxMode,
		},
	}
}

// Get returns the request's session, cached for the request.
func (st *SessionStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(st, name)
}

// New loads the session named by the request's cookie, or returns a new
// empty session (IsNew) when there is no valid cookie or the session has
// ended.
func (st *SessionStore) New(r *http.Request, name string) (*sessions.Session, error) {
	s := sessions.NewSession(st, name)
	opts := st.Options
	s.Options = &opts
	s.IsNew = true
	c, err := r.Cookie(name)
	if err != nil {
		return s, nil
	}
	sc, ok := st.decodeCookie(name, c.Value)
	if !ok {
		return s, nil // forged, tampered or expired cookie: anonymous
	}
	values, err := st.load(r.Context(), sc.ID)
	if err == nil && values == nil && st.mayBeReplicating(sc) && !st.knownEnded(sc.ID) {
		values, err = st.waitReplicated(r.Context(), sc)
	}
	if err != nil || values == nil {
		return s, err
	}
	s.ID = sc.ID
	s.Values = values
	s.IsNew = false
	return s, nil
}

// Save writes the session and sets its cookie; a session with MaxAge < 0 is
// deleted and its cookie cleared.
func (st *SessionStore) Save(r *http.Request, w http.ResponseWriter, s *sessions.Session) error {
	s.Options.Secure = isHTTPS(r)
	if s.Options.MaxAge < 0 {
		if s.ID != "" {
			err := st.store.DeleteSession(r.Context(), s.ID)
			st.MarkEnded(s.ID)
			if err != nil {
				return err
			}
		}
		http.SetCookie(w, sessions.NewCookie(s.Name(), "", s.Options))
		return nil
	}
	userID, ok := s.Values["user_id"].(int64)
	if !ok {
		return errors.New("session has no user_id")
	}
	if s.ID == "" {
		s.ID = newSessionID()
	}
	data, err := encodeSessionValues(s.Values)
	if err != nil {
		return err
	}
	now := st.store.Now()
	expires := now.Add(time.Duration(s.Options.MaxAge) * time.Second)
	if err := st.store.SaveSession(r.Context(), s.ID, userID, data, now, expires); err != nil {
		return err
	}
	if st.cache != nil {
		st.cache.drop(s.ID)
	}
	encoded, err := st.codec.Encode(s.Name(), sessionCookie{ID: s.ID, Created: now.UnixMilli()})
	if err != nil {
		return fmt.Errorf("sign session cookie: %w", err)
	}
	http.SetCookie(w, sessions.NewCookie(s.Name(), encoded, s.Options))
	return nil
}

// load reads a live session's values, from the cache when it has them;
// nil when the session does not exist or has expired.
func (st *SessionStore) load(ctx context.Context, id string) (map[any]any, error) {
	now := st.store.Now()
	var gen uint64
	if st.cache != nil {
		values, ended := st.cache.get(id, now)
		if values != nil || ended {
			return values, nil
		}
		gen = st.cache.generation()
	}
	row, ok, err := st.store.LoadSession(ctx, id)
	if err != nil || !ok || now.After(row.Expires) {
		return nil, err
	}
	values, err := decodeSessionValues(row.Data)
	if err != nil {
		return nil, err
	}
	if st.cache != nil {
		st.cache.put(id, values, gen, now, row.Expires)
	}
	return values, nil
}

// decodeCookie verifies and decodes a session cookie, or finds it among the
// cookies verified a moment ago: a storm of reconnecting tabs, each
// user's tabs with the same cookie, verified each one afresh.
func (st *SessionStore) decodeCookie(name, value string) (sessionCookie, bool) {
	now := st.store.Now()
	if sc, ok := st.cookies.get(value, now); ok {
		return sc, true
	}
	var sc sessionCookie
	if err := securecookie.DecodeMulti(name, value, &sc, st.codec, st.legacy); err != nil || sc.ID == "" {
		return sessionCookie{}, false
	}
	st.cookies.put(value, sc, now)
	return sc, true
}

// knownEnded reports whether the session is known to have ended.
func (st *SessionStore) knownEnded(id string) bool {
	if st.cache == nil {
		return false
	}
	_, ended := st.cache.get(id, st.store.Now())
	return ended
}

// mayBeReplicating reports whether a session that is missing here may just
// not have reached this replica yet.
func (st *SessionStore) mayBeReplicating(sc sessionCookie) bool {
	if st.IsPrimary == nil || st.IsPrimary() || st.ReplicaWait <= 0 {
		return false
	}
	return time.Since(time.UnixMilli(sc.Created)) < st.ReplicaWait
}

// waitReplicated polls for a fresh session until it arrives or ReplicaWait
// has passed since it was made.
func (st *SessionStore) waitReplicated(ctx context.Context, sc sessionCookie) (map[any]any, error) {
	deadline := time.UnixMilli(sc.Created).Add(st.ReplicaWait)
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		values, err := st.load(ctx, sc.ID)
		if err != nil || values != nil {
			return values, err
		}
	}
	return nil, nil
}

// Ended returns which of ids are no longer live sessions (logged out or
// expired), as this node's database knows them.
func (st *SessionStore) Ended(ctx context.Context, ids []string) ([]string, error) {
	return st.store.SessionsEnded(ctx, ids, st.store.Now())
}

// jsonSession marks session values stored as JSON. Older rows hold gob,
// whose stream never starts with a zero byte (every gob message begins
// with its non-zero length).
const jsonSession = "\x00J"

// storedSession is the JSON form of the values the app keeps in a session.
type storedSession struct {
	UserID   int64  `json:"user_id"`
	Username string `json:"username,omitempty"`
}

// encodeSessionValues stores values as JSON when they are the app's usual
// pair (a fresh gob decoder per read compiles the types each time, which
// made decoding most of a session read), and as gob otherwise.
func encodeSessionValues(values map[any]any) ([]byte, error) {
	var ss storedSession
	usual := true
	for k, v := range values {
		switch {
		case k == "user_id":
			ss.UserID, usual = v.(int64)
		case k == "username":
			ss.Username, usual = v.(string)
		default:
			usual = false
		}
		if !usual {
			break
		}
	}
	if usual {
		b, err := json.Marshal(ss)
		if err != nil {
			return nil, fmt.Errorf("encode session: %w", err)
		}
		return append([]byte(jsonSession), b...), nil
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(values); err != nil {
		return nil, fmt.Errorf("encode session: %w", err)
	}
	return buf.Bytes(), nil
}

// decodeSessionValues reads what encodeSessionValues stored, or a gob row
// written before.
func decodeSessionValues(data []byte) (map[any]any, error) {
	if b, ok := bytes.CutPrefix(data, []byte(jsonSession)); ok {
		var ss storedSession
		if err := json.Unmarshal(b, &ss); err != nil {
			return nil, fmt.Errorf("decode session: %w", err)
		}
		values := map[any]any{"user_id": ss.UserID}
		if ss.Username != "" {
			values["username"] = ss.Username
		}
		return values, nil
	}
	values := map[any]any{}
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&values); err != nil {
		return nil, fmt.Errorf("decode session: %w", err)
	}
	return values, nil
}

func newSessionID() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// isHTTPS reports whether the client reached us over https, directly or
// through a TLS-terminating proxy such as Fly's.
func isHTTPS(r *http.Request) bool {
	return r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"
}
