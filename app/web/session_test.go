package web

import (
	"bytes"
	"context"
	"encoding/gob"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/gorilla/sessions"

	"notesync/app"
	"notesync/app/sqlite/sqlitetest"
)

// mustLogIn saves a new session for u, as log-in does, and returns its
// cookie and id.
func mustLogIn(t testing.TB, st *SessionStore, u *app.User) (*http.Cookie, string) {
	t.Helper()
	req := httptest.NewRequest("POST", "/login", nil)
	rec := httptest.NewRecorder()
	sess, _ := st.New(req, SessionCookie)
	sess.Values = map[any]any{"user_id": u.ID, "username": u.Username}
	if err := st.Save(req, rec, sess); err != nil {
		t.Fatal(err)
	}
	return rec.Result().Cookies()[0], sess.ID
}

func TestSessionOnReplica(t *testing.T) {
	s := sqlitetest.NewStore(t)
	u := sqlitetest.User(t, s, "alice")
	st := NewSessionStore(s, []byte("a secret of enough length"))
	primary := false
	st.IsPrimary = func() bool { return primary }
	st.ReplicaWait = 2 * time.Second

	// A session made "on the primary": the row and its cookie.
	cookie, id := mustLogIn(t, st, u)
	var row struct {
		data             []byte
		created, expires int64
	}
	if err := s.DB().ReadPool().QueryRow(`SELECT data, created_at, expires_at FROM sessions WHERE id = ?`, id).Scan(&row.data, &row.created, &row.expires); err != nil {
		t.Fatal(err)
	}
	remove := func() { s.DB().WritePool().Exec(`DELETE FROM sessions WHERE id = ?`, id) }
	restore := func() {
		s.DB().WritePool().Exec(`INSERT INTO sessions (id, user_id, data, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
			id, u.ID, row.data, row.created, row.expires)
	}
	lookup := func() (*http.Request, bool) {
		r := httptest.NewRequest("GET", "/api/notes", nil)
		r.AddCookie(cookie)
		got, err := st.New(r, SessionCookie)
		if err != nil {
			t.Fatal(err)
		}
		return r, !got.IsNew
	}

	t.Run("a fresh session that is still replicating is waited for", func(t *testing.T) {
		remove()
		go func() { time.Sleep(200 * time.Millisecond); restore() }()
		if _, ok := lookup(); !ok {
			t.Fatal("fresh session not found on the replica")
		}
	})

	t.Run("on the primary a missing session is simply gone", func(t *testing.T) {
		primary = true
		defer func() { primary = false }()
		remove()
		defer restore()
		start := time.Now()
		if _, ok := lookup(); ok || time.Since(start) > 500*time.Millisecond {
			t.Fatalf("found=%v after %v", ok, time.Since(start))
		}
	})

	t.Run("an ended session older than the wait is not waited for", func(t *testing.T) {
		st.ReplicaWait = time.Millisecond
		defer func() { st.ReplicaWait = 2 * time.Second }()
		remove()
		defer restore()
		time.Sleep(5 * time.Millisecond)
		start := time.Now()
		if _, ok := lookup(); ok || time.Since(start) > 500*time.Millisecond {
			t.Fatalf("found=%v after %v", ok, time.Since(start))
		}
	})
}

func TestSessionsEnded(t *testing.T) {
	s := sqlitetest.NewStore(t)
	u := sqlitetest.User(t, s, "alice")
	st := NewSessionStore(s, []byte("a secret of enough length"))
	save := func() string {
		_, id := mustLogIn(t, st, u)
		return id
	}
	live, gone, expired := save(), save(), save()
	s.DB().WritePool().Exec(`DELETE FROM sessions WHERE id = ?`, gone)
	s.DB().WritePool().Exec(`UPDATE sessions SET expires_at = 1 WHERE id = ?`, expired)
	ended, err := st.Ended(context.Background(), []string{live, gone, expired})
	if err != nil {
		t.Fatal(err)
	}
	if len(ended) != 2 || ended[0] != gone || ended[1] != expired {
		t.Fatalf("ended %v, want [%s %s]", ended, gone, expired)
	}
}

func TestSessionCache(t *testing.T) {
	s := sqlitetest.NewStore(t)
	clock := time.Now()
	s.Now = func() time.Time { return clock }
	u := sqlitetest.User(t, s, "alice")
	st := NewSessionStore(s, []byte("a secret of enough length"))
	st.CacheFor(time.Second)

	login := func() (*http.Cookie, string) { return mustLogIn(t, st, u) }
	lookup := func(c *http.Cookie) *sessions.Session {
		r := httptest.NewRequest("GET", "/api/notes", nil)
		r.AddCookie(c)
		got, err := st.New(r, SessionCookie)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	// endElsewhere deletes the row as log-out on another node would (the
	// deletion replicates here; the gossip word may come or not).
	endElsewhere := func(id string) {
		if _, err := s.DB().WritePool().Exec(`DELETE FROM sessions WHERE id = ?`, id); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("ended on another node: gone once that node's word arrives", func(t *testing.T) {
		c, id := login()
		if lookup(c).IsNew {
			t.Fatal("fresh session not found")
		}
		endElsewhere(id)
		if lookup(c).IsNew {
			t.Fatal("want the cached session before the word arrives")
		}
		st.MarkEnded(id)
		if !lookup(c).IsNew {
			t.Fatal("session still accepted after the word arrived")
		}
	})

	t.Run("the word arrives before the log-out replicates: refused at once", func(t *testing.T) {
		c, id := login()
		st.MarkEnded(id) // the row is still in this node's table
		if !lookup(c).IsNew {
			t.Fatal("an ended session was loaded again from a lagging table")
		}
	})

	t.Run("ended on another node, word lost: gone after the TTL", func(t *testing.T) {
		c, id := login()
		lookup(c)
		endElsewhere(id)
		clock = clock.Add(time.Second)
		if !lookup(c).IsNew {
			t.Fatal("session still accepted after the cache TTL")
		}
	})

	t.Run("log-out here ends it at once", func(t *testing.T) {
		c, _ := login()
		r := httptest.NewRequest("POST", "/logout", nil)
		r.AddCookie(c)
		sess := lookup(c)
		sess.Options.MaxAge = -1
		if err := st.Save(r, httptest.NewRecorder(), sess); err != nil {
			t.Fatal(err)
		}
		if !lookup(c).IsNew {
			t.Fatal("session accepted after log-out")
		}
	})

	t.Run("a caller changing its values does not change the cache", func(t *testing.T) {
		c, _ := login()
		lookup(c).Values["username"] = "mallory"
		if got := lookup(c).Values["username"]; got != "alice" {
			t.Fatalf("username %v, want alice", got)
		}
	})

	t.Run("a remembered cookie still needs its session, and a changed one is verified", func(t *testing.T) {
		c, id := login()
		lookup(c) // verified and remembered
		forged := *c
		forged.Value = c.Value[:len(c.Value)-2] + "xx"
		if !lookup(&forged).IsNew {
			t.Fatal("a cookie one character off was accepted")
		}
		st.MarkEnded(id)
		if !lookup(c).IsNew {
			t.Fatal("a remembered cookie outlived its session")
		}
	})

	t.Run("a read that raced a change is not kept", func(t *testing.T) {
		c := newSessionCache(time.Minute)
		now := time.Now()
		gen := c.generation()
		c.drop("s1") // the session is saved again while the read is in flight
		c.put("s1", map[any]any{"user_id": int64(1)}, gen, now, now.Add(time.Hour))
		if v, _ := c.get("s1", now); v != nil {
			t.Fatal("stale read kept after a change")
		}
	})

	t.Run("an entry never outlives its session", func(t *testing.T) {
		c := newSessionCache(time.Minute)
		now := time.Now()
		c.put("s1", map[any]any{"user_id": int64(1)}, c.generation(), now, now.Add(time.Second))
		if v, _ := c.get("s1", now.Add(time.Second)); v != nil {
			t.Fatal("entry served past the session's expiry")
		}
	})
}

func TestSessionValuesStored(t *testing.T) {
	usual := map[any]any{"user_id": int64(42), "username": "alice"}
	data, err := encodeSessionValues(usual)
	if err != nil || !bytes.HasPrefix(data, []byte(jsonSession)) {
		t.Fatalf("usual values stored as %q (%v), want JSON", data, err)
	}
	other := map[any]any{"user_id": int64(42), "flash": []string{"saved"}}
	odata, err := encodeSessionValues(other)
	if err != nil || bytes.HasPrefix(odata, []byte(jsonSession)) {
		t.Fatalf("other values stored as %q (%v), want gob", odata, err)
	}
	// A row written before JSON: gob of the usual values.
	var old bytes.Buffer
	if err := gob.NewEncoder(&old).Encode(usual); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		data []byte
		want map[any]any
	}{"json": {data, usual}, "gob": {odata, other}, "old gob row": {old.Bytes(), usual}} {
		got, err := decodeSessionValues(c.data)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: decoded %v (%v), want %v", name, got, err, c.want)
		}
	}
}

// TestSessionCookieMadeBeforeJSON: a cookie signed before cookies held JSON
// (gob inside) still authenticates.
func TestSessionCookieMadeBeforeJSON(t *testing.T) {
	s := sqlitetest.NewStore(t)
	u := sqlitetest.User(t, s, "alice")
	st := NewSessionStore(s, []byte("a secret of enough length"))
	_, id := mustLogIn(t, st, u)
	old, err := st.legacy.Encode(SessionCookie, sessionCookie{ID: id, Created: time.Now().UnixMilli()})
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("GET", "/api/notes", nil)
	r.AddCookie(&http.Cookie{Name: SessionCookie, Value: old})
	got, err := st.New(r, SessionCookie)
	if err != nil || got.IsNew || got.Values["username"] != "alice" {
		t.Fatalf("old cookie: new=%v values=%v err=%v", got.IsNew, got.Values, err)
	}
	// And a forged one still does not.
	r = httptest.NewRequest("GET", "/api/notes", nil)
	r.AddCookie(&http.Cookie{Name: SessionCookie, Value: old[:len(old)-4] + "AAAA"})
	if got, _ := st.New(r, SessionCookie); !got.IsNew {
		t.Fatal("a tampered cookie authenticated")
	}
}
