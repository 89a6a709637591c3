package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestSessionOnReplica(t *testing.T) {
	s := newTestStore(t)
	u := mustUser(t, s, "alice")
	st := NewSessionStore(s, []byte("a secret of enough length"))
	primary := false
	st.IsPrimary = func() bool { return primary }
	st.ReplicaWait = 2 * time.Second

	// A session made "on the primary": the row and its cookie.
	req := httptest.NewRequest("POST", "/login", nil)
	rec := httptest.NewRecorder()
	sess, _ := st.New(req, SessionCookie)
	sess.Values = map[any]any{"user_id": u.ID, "username": u.Username}
	if err := st.Save(req, rec, sess); err != nil {
		t.Fatal(err)
	}
	cookie := rec.Result().Cookies()[0]
	var row struct {
		data             []byte
		created, expires int64
	}
	if err := s.db.read.QueryRow(`SELECT data, created_at, expires_at FROM sessions WHERE id = ?`, sess.ID).Scan(&row.data, &row.created, &row.expires); err != nil {
		t.Fatal(err)
	}
	remove := func() { s.db.write.Exec(`DELETE FROM sessions WHERE id = ?`, sess.ID) }
	restore := func() {
		s.db.write.Exec(`INSERT INTO sessions (id, user_id, data, created_at, expires_at) VALUES (?, ?, ?, ?, ?)`,
			sess.ID, u.ID, row.data, row.created, row.expires)
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
	s := newTestStore(t)
	u := mustUser(t, s, "alice")
	st := NewSessionStore(s, []byte("a secret of enough length"))
	save := func() string {
		req := httptest.NewRequest("POST", "/login", nil)
		sess, _ := st.New(req, SessionCookie)
		sess.Values = map[any]any{"user_id": u.ID, "username": u.Username}
		if err := st.Save(req, httptest.NewRecorder(), sess); err != nil {
			t.Fatal(err)
		}
		return sess.ID
	}
	live, gone, expired := save(), save(), save()
	s.db.write.Exec(`DELETE FROM sessions WHERE id = ?`, gone)
	s.db.write.Exec(`UPDATE sessions SET expires_at = 1 WHERE id = ?`, expired)
	ended, err := st.Ended(context.Background(), []string{live, gone, expired})
	if err != nil {
		t.Fatal(err)
	}
	if len(ended) != 2 || ended[0] != gone || ended[1] != expired {
		t.Fatalf("ended %v, want [%s %s]", ended, gone, expired)
	}
}
