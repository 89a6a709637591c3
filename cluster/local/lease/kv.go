package lease

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// kvEntry is one key. Its fields are guarded by Server.mu.
type kvEntry struct {
	value       []byte
	flags       uint64
	session     string // the session that holds it, or ""
	createIndex uint64
	modifyIndex uint64
	lockIndex   uint64 // how many times it was acquired
}

// kvPair is a key as Consul's API shows it (api.KVPair).
type kvPair struct {
	Key         string
	CreateIndex uint64
	ModifyIndex uint64
	LockIndex   uint64
	Flags       uint64
	Value       []byte // base64 on the wire; null when empty
	Session     string `json:",omitempty"`
}

func (s *Server) handleKVGet(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	q := r.URL.Query()
	for _, p := range []string{"recurse", "keys", "raw", "separator"} {
		if q.Has(p) {
			http.Error(w, fmt.Sprintf("?%s is not served by this lease server", p), http.StatusBadRequest)
			return
		}
	}
	var minIndex uint64
	if v := q.Get("index"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			http.Error(w, "Invalid index: "+err.Error(), http.StatusBadRequest)
			return
		}
		minIndex = n
	}
	wait := defaultWait
	if v := q.Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			http.Error(w, "Invalid wait time: "+err.Error(), http.StatusBadRequest)
			return
		}
		wait = min(d, maxWait)
	}

	pair, idx := s.getKV(r, key, minIndex, wait)
	if pair == nil {
		h := w.Header()
		h.Set("X-Consul-Index", strconv.FormatUint(max(idx, 1), 10))
		h.Set("X-Consul-KnownLeader", "true")
		h.Set("X-Consul-LastContact", "0")
		w.WriteHeader(http.StatusNotFound)
		return
	}
	writeJSON(w, idx, []kvPair{*pair})
}

// getKV reads key. With minIndex set it is a blocking query: it waits until
// the key's index passes minIndex, for at most wait, or until the client
// leaves or the server closes, and then answers what the key holds.
func (s *Server) getKV(r *http.Request, key string, minIndex uint64, wait time.Duration) (*kvPair, uint64) {
	var timeout <-chan time.Time
	if minIndex > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		timeout = t.C
	}
	for {
		s.mu.Lock()
		pair, idx := s.lookup(key)
		changed := s.changed
		s.mu.Unlock()
		if minIndex == 0 || idx > minIndex {
			return pair, idx
		}
		select {
		case <-changed:
		case <-timeout:
			return pair, idx
		case <-r.Context().Done():
			return pair, idx
		case <-s.done:
			return pair, idx
		}
	}
}

// lookup returns key and its index, as Consul's KV endpoint does: the key's
// ModifyIndex, or, when it is missing, the index of the last change to any
// key. s.mu must be held.
func (s *Server) lookup(key string) (*kvPair, uint64) {
	e := s.kvs[key]
	if e == nil {
		return nil, s.kvIndex
	}
	return &kvPair{
		Key: key, CreateIndex: e.createIndex, ModifyIndex: e.modifyIndex,
		LockIndex: e.lockIndex, Flags: e.flags, Value: e.value, Session: e.session,
	}, e.modifyIndex
}

// kvWrite is one PUT /v1/kv/<key>.
type kvWrite struct {
	key     string
	value   []byte
	flags   uint64
	op      string // "set", "acquire", "release" or "cas"
	session string // acquire, release
	cas     uint64 // cas: the ModifyIndex the key must have; 0: it must be missing
}

func (s *Server) handleKVPut(w http.ResponseWriter, r *http.Request) {
	wr, status, err := parseKVWrite(r)
	if err != nil {
		http.Error(w, err.Error(), status)
		return
	}
	s.mu.Lock()
	ok, err := s.applyKV(wr)
	idx := s.index
	s.mu.Unlock()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, idx, ok)
}

// parseKVWrite reads a PUT as Consul's HTTP API does: ?cas wins over
// ?release, which wins over ?acquire.
func parseKVWrite(r *http.Request) (kvWrite, int, error) {
	wr := kvWrite{key: r.PathValue("key"), op: "set"}
	if wr.key == "" {
		return wr, http.StatusBadRequest, fmt.Errorf("Missing key name")
	}
	q := r.URL.Query()
	if v := q.Get("flags"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return wr, http.StatusBadRequest, fmt.Errorf("Invalid flags: %v", err)
		}
		wr.flags = n
	}
	if q.Has("acquire") {
		wr.op, wr.session = "acquire", q.Get("acquire")
	}
	if q.Has("release") {
		wr.op, wr.session = "release", q.Get("release")
	}
	if q.Has("cas") {
		n, err := strconv.ParseUint(q.Get("cas"), 10, 64)
		if err != nil {
			return wr, http.StatusBadRequest, fmt.Errorf("Invalid cas index: %v", err)
		}
		wr.op, wr.cas = "cas", n
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxValueSize+1))
	if err != nil {
		return wr, http.StatusBadRequest, fmt.Errorf("read value: %v", err)
	}
	if len(body) > maxValueSize {
		return wr, http.StatusRequestEntityTooLarge, fmt.Errorf("Request body too large, max size: %d bytes", maxValueSize)
	}
	if len(body) > 0 {
		wr.value = body
	}
	return wr, 0, nil
}

// applyKV applies one write as Consul's state store does and reports
// whether it took effect. s.mu must be held.
func (s *Server) applyKV(wr kvWrite) (bool, error) {
	e := s.kvs[wr.key]
	switch wr.op {
	case "acquire":
		if s.sessions[wr.session] == nil {
			return false, fmt.Errorf("invalid session %q", wr.session)
		}
		if until, ok := s.lockDelays[wr.key]; ok {
			if time.Now().Before(until) {
				return false, nil // a lost holder may still think it holds it
			}
			delete(s.lockDelays, wr.key)
		}
		if e != nil && e.session != "" && e.session != wr.session {
			return false, nil
		}
	case "release":
		if e == nil || e.session != wr.session {
			return false, nil
		}
	case "cas":
		if (wr.cas == 0 && e != nil) || (wr.cas != 0 && (e == nil || e.modifyIndex != wr.cas)) {
			return false, nil
		}
	}

	idx := s.nextIndex()
	if e == nil {
		e = &kvEntry{createIndex: idx}
		s.kvs[wr.key] = e
	}
	e.value, e.flags, e.modifyIndex = wr.value, wr.flags, idx
	switch {
	case wr.op == "acquire" && e.session != wr.session:
		e.session = wr.session
		e.lockIndex++
		s.Logger.Info("lease key acquired", "key", wr.key, "session", wr.session, "value", string(wr.value))
	case wr.op == "release":
		e.session = ""
		s.Logger.Info("lease key released", "key", wr.key, "session", wr.session)
	}
	s.notify(idx)
	return true, nil
}

// Holder returns key's value while a session holds it: for LiteFS's lease,
// the primary's JSON (hostname and advertise-url). ok is false while no
// session holds key (or it is missing): no node is primary.
func (s *Server) Holder(key string) (value []byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.kvs[key]
	if e == nil || e.session == "" {
		return nil, false
	}
	return append([]byte(nil), e.value...), true
}
