package lease_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"notesync/cluster/local/lease"
)

// These tests speak Consul's HTTP API on the wire, for what LiteFS's client
// does not show: blocking queries, indexes, compare-and-set, refusals.

type reply struct {
	status int
	index  uint64
	body   string
}

func call(t *testing.T, method, url, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	idx, _ := strconv.ParseUint(resp.Header.Get("X-Consul-Index"), 10, 64)
	return reply{status: resp.StatusCode, index: idx, body: strings.TrimSpace(string(b))}
}

// want fails unless r has status and, if body is set, body.
func (r reply) want(t *testing.T, status int, body string) reply {
	t.Helper()
	if r.status != status || (body != "" && r.body != body) {
		t.Fatalf("got %d %q, want %d %q", r.status, r.body, status, body)
	}
	return r
}

// kv is what GET /v1/kv/<key> answers for one key.
type kv struct {
	Key         string
	ModifyIndex uint64
	LockIndex   uint64
	Value       []byte
	Session     string
}

func getKV(t *testing.T, s *lease.Server, key, query string) (kv, reply) {
	t.Helper()
	r := call(t, "GET", s.URL()+"/v1/kv/"+key+query, "")
	var pairs []kv
	if r.status == http.StatusOK {
		if err := json.Unmarshal([]byte(r.body), &pairs); err != nil || len(pairs) != 1 {
			t.Fatalf("GET %s: %q: %v", key, r.body, err)
		}
		if r.index != pairs[0].ModifyIndex {
			t.Fatalf("X-Consul-Index %d, want the key's ModifyIndex %d", r.index, pairs[0].ModifyIndex)
		}
		return pairs[0], r
	}
	return kv{}, r
}

func createSession(t *testing.T, s *lease.Server, body string) string {
	t.Helper()
	r := call(t, "PUT", s.URL()+"/v1/session/create", body).want(t, http.StatusOK, "")
	var out struct{ ID string }
	if err := json.Unmarshal([]byte(r.body), &out); err != nil || out.ID == "" {
		t.Fatalf("session create: %q: %v", r.body, err)
	}
	return out.ID
}

func TestBlockingRead(t *testing.T) {
	s := openServer(t)
	call(t, "PUT", s.URL()+"/v1/kv/k", "one").want(t, http.StatusOK, "true")
	_, first := getKV(t, s, "k", "")

	t.Run("wakes when the key changes", func(t *testing.T) {
		got := make(chan []kv, 1)
		start := time.Now()
		go func() {
			var pairs []kv
			resp, err := http.Get(s.URL() + "/v1/kv/k?wait=5s&index=" + strconv.FormatUint(first.index, 10))
			if err == nil {
				_ = json.NewDecoder(resp.Body).Decode(&pairs)
				resp.Body.Close()
			}
			got <- pairs
		}()
		time.Sleep(200 * time.Millisecond)
		call(t, "PUT", s.URL()+"/v1/kv/other", "x").want(t, http.StatusOK, "true") // another key: no wake
		call(t, "PUT", s.URL()+"/v1/kv/k", "two").want(t, http.StatusOK, "true")
		pairs := <-got
		if len(pairs) != 1 {
			t.Fatalf("blocking read answered %v", pairs)
		}
		e := pairs[0]
		if string(e.Value) != "two" || e.ModifyIndex <= first.index {
			t.Fatalf("woke with %q at %d, want \"two\" after %d", e.Value, e.ModifyIndex, first.index)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("woke after %v", took)
		}
	})

	t.Run("answers after wait when nothing changes", func(t *testing.T) {
		_, now := getKV(t, s, "k", "")
		start := time.Now()
		_, r := getKV(t, s, "k", "?wait=300ms&index="+strconv.FormatUint(now.index, 10))
		if took := time.Since(start); took < 300*time.Millisecond || took > 300*time.Millisecond+slack {
			t.Fatalf("answered after %v, want 300ms", took)
		}
		if r.status != http.StatusOK || r.index != now.index {
			t.Fatalf("got %d at index %d, want 200 at %d", r.status, r.index, now.index)
		}
	})

	t.Run("wakes with 404 when the key's session ends", func(t *testing.T) {
		id := createSession(t, s, `{"TTL":"1s","Behavior":"delete","LockDelay":"1ms"}`)
		call(t, "PUT", s.URL()+"/v1/kv/held?acquire="+id, "v").want(t, http.StatusOK, "true")
		_, held := getKV(t, s, "held", "")
		_, r := getKV(t, s, "held", "?wait=5s&index="+strconv.FormatUint(held.index, 10))
		if r.status != http.StatusNotFound || r.index <= held.index {
			t.Fatalf("got %d at index %d, want 404 after %d", r.status, r.index, held.index)
		}
	})

	t.Run("ends when the server closes", func(t *testing.T) {
		s := &lease.Server{Logger: quietLogger()}
		if err := s.Open(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			req, _ := http.NewRequest("GET", s.URL()+"/v1/kv/k?index=1000&wait=1m", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		time.Sleep(100 * time.Millisecond)
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			t.Fatal("a blocking query outlived Close")
		}
	})
}

func TestKV(t *testing.T) {
	s := openServer(t)
	url := s.URL() + "/v1/kv/"

	t.Run("a missing key is 404 with an index", func(t *testing.T) {
		if r := call(t, "GET", url+"missing", ""); r.status != http.StatusNotFound || r.index == 0 {
			t.Fatalf("got %d, index %d; want 404 and an index", r.status, r.index)
		}
	})

	t.Run("cas=0 creates only; cas=N replaces only at N", func(t *testing.T) {
		call(t, "PUT", url+"c?cas=0", "a").want(t, http.StatusOK, "true")
		call(t, "PUT", url+"c?cas=0", "b").want(t, http.StatusOK, "false")
		e, _ := getKV(t, s, "c", "")
		call(t, "PUT", url+"c?cas="+strconv.FormatUint(e.ModifyIndex+1, 10), "b").want(t, http.StatusOK, "false")
		call(t, "PUT", url+"c?cas="+strconv.FormatUint(e.ModifyIndex, 10), "b").want(t, http.StatusOK, "true")
		if e, _ := getKV(t, s, "c", ""); string(e.Value) != "b" {
			t.Fatalf("value %q, want b", e.Value)
		}
	})

	t.Run("acquire, a plain put, and release", func(t *testing.T) {
		a := createSession(t, s, `{"TTL":"10s","LockDelay":"1ms"}`)
		b := createSession(t, s, `{"TTL":"10s","LockDelay":"1ms"}`)
		call(t, "PUT", url+"l?acquire="+a, "a").want(t, http.StatusOK, "true")
		call(t, "PUT", url+"l?acquire="+b, "b").want(t, http.StatusOK, "false")
		call(t, "PUT", url+"l?acquire="+a, "a2").want(t, http.StatusOK, "true") // the holder again
		call(t, "PUT", url+"l", "plain").want(t, http.StatusOK, "true")
		if e, _ := getKV(t, s, "l", ""); e.Session != a || e.LockIndex != 1 || string(e.Value) != "plain" {
			t.Fatalf("got %+v, want held by %s once, value plain", e, a)
		}
		call(t, "PUT", url+"l?release="+b, "").want(t, http.StatusOK, "false")
		if v, ok := s.Holder("l"); !ok || string(v) != "plain" {
			t.Fatalf("Holder while held: %q, %v; want plain, true", v, ok)
		}
		call(t, "PUT", url+"l?release="+a, "").want(t, http.StatusOK, "true")
		if e, _ := getKV(t, s, "l", ""); e.Session != "" || e.Value != nil {
			t.Fatalf("after release: %+v, want free and empty", e)
		}
		if v, ok := s.Holder("l"); ok {
			t.Fatalf("Holder after release: %q, true; want no holder", v)
		}
		call(t, "PUT", url+"l?acquire="+b, "b").want(t, http.StatusOK, "true")
		if e, _ := getKV(t, s, "l", ""); e.Session != b || e.LockIndex != 2 {
			t.Fatalf("got %+v, want held by %s, lock index 2", e, b)
		}
	})

	t.Run("a session that ends with release keeps the key, locked for its lock delay", func(t *testing.T) {
		id := createSession(t, s, `{"LockDelay":"400ms"}`) // behaviour release, no TTL
		other := createSession(t, s, `{"TTL":"10s"}`)
		call(t, "PUT", url+"r?acquire="+id, "v").want(t, http.StatusOK, "true")
		call(t, "PUT", s.URL()+"/v1/session/destroy/"+id, "").want(t, http.StatusOK, "true")
		if e, r := getKV(t, s, "r", ""); r.status != http.StatusOK || e.Session != "" || string(e.Value) != "v" {
			t.Fatalf("after destroy: %d %+v, want the key kept, free", r.status, e)
		}
		call(t, "PUT", url+"r?acquire="+other, "w").want(t, http.StatusOK, "false")
		time.Sleep(400 * time.Millisecond)
		call(t, "PUT", url+"r?acquire="+other, "w").want(t, http.StatusOK, "true")
	})

	t.Run("refuses what it cannot do as Consul would", func(t *testing.T) {
		call(t, "PUT", url+"x?acquire=no-such-session", "v").want(t, http.StatusInternalServerError, "")
		call(t, "GET", url+"x?recurse", "").want(t, http.StatusBadRequest, "")
		call(t, "PUT", url+"big", strings.Repeat("x", 512*1024+1)).want(t, http.StatusRequestEntityTooLarge, "")
		call(t, "DELETE", url+"x", "").want(t, http.StatusMethodNotAllowed, "")
	})
}

func TestSessions(t *testing.T) {
	s := openServer(t)
	url := s.URL() + "/v1/session/"

	t.Run("renew answers the session; 404 once it is gone", func(t *testing.T) {
		id := createSession(t, s, `{"Name":"litefs","TTL":"10s","LockDelay":2,"Behavior":"delete"}`)
		r := call(t, "PUT", url+"renew/"+id, "").want(t, http.StatusOK, "")
		var entries []struct {
			ID, Name, Behavior, TTL string
			LockDelay               time.Duration
		}
		if err := json.Unmarshal([]byte(r.body), &entries); err != nil || len(entries) != 1 {
			t.Fatalf("renew: %q: %v", r.body, err)
		}
		if e := entries[0]; e.ID != id || e.Name != "litefs" || e.Behavior != "delete" || e.TTL != "10s" || e.LockDelay != 2*time.Second {
			t.Fatalf("renew answered %+v", e)
		}
		call(t, "PUT", url+"destroy/"+id, "").want(t, http.StatusOK, "true")
		call(t, "PUT", url+"renew/"+id, "").want(t, http.StatusNotFound, "")
		call(t, "PUT", url+"destroy/"+id, "").want(t, http.StatusOK, "true")
	})

	t.Run("refuses a TTL out of range, a bad behaviour and an unknown node", func(t *testing.T) {
		call(t, "PUT", url+"create", `{"TTL":"500ms"}`).want(t, http.StatusBadRequest, "")
		call(t, "PUT", url+"create", `{"TTL":"25h"}`).want(t, http.StatusBadRequest, "")
		call(t, "PUT", url+"create", `{"Behavior":"explode"}`).want(t, http.StatusBadRequest, "")
		call(t, "PUT", url+"create", `{"Node":"nowhere"}`).want(t, http.StatusInternalServerError, "Missing node registration")
		call(t, "GET", url+"create", "").want(t, http.StatusMethodNotAllowed, "")
	})
}

func TestOpen(t *testing.T) {
	s := &lease.Server{Addr: "0.0.0.0:0"}
	if err := s.Open(); !errors.Is(err, lease.ErrNotLoopback) {
		s.Close()
		t.Fatalf("open on 0.0.0.0: %v, want %v", err, lease.ErrNotLoopback)
	}
	if err := (&lease.Server{}).Close(); err != nil {
		t.Fatalf("close of a server never opened: %v", err)
	}
}
