package lease

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Session behaviours: what happens to the keys a session holds when it ends.
const (
	behaviorRelease = "release"
	behaviorDelete  = "delete"
)

// session is one Consul session. Its fields are guarded by Server.mu.
type session struct {
	id          string
	name        string
	node        string
	behavior    string
	ttl         time.Duration // 0: no TTL, it lives until destroyed
	lockDelay   time.Duration
	createIndex uint64
	expires     time.Time   // with a TTL: when it ends unless renewed
	timer       *time.Timer // with a TTL: ends it at expires
}

// sessionEntry is a session as Consul's API shows it (api.SessionEntry).
type sessionEntry struct {
	ID          string
	Name        string
	Node        string
	LockDelay   time.Duration // in nanoseconds on the wire, as Consul's
	Behavior    string
	TTL         string
	NodeChecks  []string
	CreateIndex uint64
	ModifyIndex uint64
}

func (sess *session) entry() sessionEntry {
	e := sessionEntry{
		ID: sess.id, Name: sess.name, Node: sess.node, LockDelay: sess.lockDelay,
		Behavior: sess.behavior, NodeChecks: []string{},
		CreateIndex: sess.createIndex, ModifyIndex: sess.createIndex,
	}
	if sess.ttl > 0 {
		e.TTL = sess.ttl.String()
	}
	return e
}

// sessionRequest is the body of PUT /v1/session/create. Checks are
// accepted and ignored: nothing here has health checks.
type sessionRequest struct {
	Name      string
	Node      string
	LockDelay json.RawMessage // "15s", or a number: seconds below 1000, else nanoseconds
	Behavior  string
	TTL       string
}

func (s *Server) handleSessionCreate(w http.ResponseWriter, r *http.Request) {
	var req sessionRequest
	body, err := io.ReadAll(io.LimitReader(r.Body, maxValueSize))
	if err != nil {
		http.Error(w, "read request: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(strings.TrimSpace(string(body))) > 0 {
		if err := json.Unmarshal(body, &req); err != nil {
			http.Error(w, "Request decode failed: "+err.Error(), http.StatusBadRequest)
			return
		}
	}
	sess, err := s.newSession(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}

	s.mu.Lock()
	if sess.node != "" && !s.nodes[sess.node] {
		s.mu.Unlock()
		http.Error(w, "Missing node registration", http.StatusInternalServerError)
		return
	}
	sess.createIndex = s.nextIndex()
	s.sessions[sess.id] = sess
	if sess.ttl > 0 {
		sess.expires = time.Now().Add(sess.ttl)
		id := sess.id
		sess.timer = time.AfterFunc(sess.ttl, func() { s.expire(id) })
	}
	s.mu.Unlock()

	writeJSON(w, sess.createIndex, struct{ ID string }{sess.id})
}

// newSession validates a create request as Consul's agent does.
func (s *Server) newSession(req sessionRequest) (*session, error) {
	sess := &session{id: newID(), name: req.Name, node: req.Node, behavior: req.Behavior}
	if sess.node == "" {
		sess.node = agentNode
	}
	switch sess.behavior {
	case "":
		sess.behavior = behaviorRelease
	case behaviorRelease, behaviorDelete:
	default:
		return nil, fmt.Errorf("Invalid Behavior setting '%s'", req.Behavior)
	}
	if req.TTL != "" {
		ttl, err := time.ParseDuration(req.TTL)
		if err != nil {
			return nil, fmt.Errorf("Request decode failed: %v", err)
		}
		if ttl != 0 && (ttl < s.MinTTL || ttl > maxTTL) {
			return nil, fmt.Errorf("Invalid Session TTL '%d', must be between [%v=%v]", ttl, s.MinTTL, maxTTL)
		}
		sess.ttl = ttl
	}
	delay, err := parseLockDelay(req.LockDelay)
	if err != nil {
		return nil, err
	}
	sess.lockDelay = min(delay, maxLockDelay)
	return sess, nil
}

// parseLockDelay reads a session's LockDelay as Consul's agent does: a
// duration string, or a number that is seconds when below 1000 and
// nanoseconds otherwise. Absent, it is Consul's default, 15 s.
func parseLockDelay(raw json.RawMessage) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return defaultLockDelay, nil
	}
	var str string
	if err := json.Unmarshal(raw, &str); err == nil {
		d, err := time.ParseDuration(str)
		if err != nil {
			return 0, fmt.Errorf("Request decode failed: LockDelay %q: %v", str, err)
		}
		return d, nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("Request decode failed: LockDelay %s is neither a duration nor a number", raw)
	}
	if n < 1000 {
		return time.Duration(n) * time.Second, nil
	}
	return time.Duration(n), nil
}

func (s *Server) handleSessionRenew(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	sess := s.sessions[id]
	if sess == nil {
		s.mu.Unlock()
		http.Error(w, fmt.Sprintf("Session id '%s' not found", id), http.StatusNotFound)
		return
	}
	if sess.ttl > 0 {
		sess.expires = time.Now().Add(sess.ttl)
		sess.timer.Reset(sess.ttl)
	}
	e := sess.entry()
	idx := s.index
	s.mu.Unlock()

	writeJSON(w, idx, []sessionEntry{e})
}

// handleSessionDestroy ends a session; like Consul, it answers true for a
// session that no longer exists.
func (s *Server) handleSessionDestroy(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if sess := s.sessions[r.PathValue("id")]; sess != nil {
		s.invalidate(sess, "destroyed")
	}
	idx := s.index
	s.mu.Unlock()

	writeJSON(w, idx, true)
}

// expire ends session id if its TTL has run out without a renewal; it runs
// on the session's timer.
func (s *Server) expire(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[id]
	if s.closed || sess == nil || time.Now().Before(sess.expires) {
		return // renewed meanwhile: the timer was reset
	}
	s.invalidate(sess, "expired")
}

// invalidate ends sess: each key it holds is released or deleted, by its
// behaviour, and cannot be acquired again for its lock delay. s.mu must be
// held.
func (s *Server) invalidate(sess *session, why string) {
	delete(s.sessions, sess.id)
	if sess.timer != nil {
		sess.timer.Stop()
	}
	idx := s.nextIndex()
	now := time.Now()
	var keys []string
	for key, e := range s.kvs {
		if e.session != sess.id {
			continue
		}
		keys = append(keys, key)
		if sess.behavior == behaviorDelete {
			delete(s.kvs, key)
		} else {
			e.session = ""
			e.modifyIndex = idx
		}
		if sess.lockDelay > 0 {
			s.lockDelays[key] = now.Add(sess.lockDelay)
		}
	}
	if len(keys) == 0 {
		return
	}
	s.notify(idx)
	s.Logger.Info("lease session ended; its keys are free after the lock delay",
		"session", sess.id, "name", sess.name, "why", why, "behavior", sess.behavior,
		"keys", keys, "lock_delay", sess.lockDelay)
}

// handleCatalogRegister registers a node by name, so that sessions may
// name it. Everything else in the registration is ignored.
func (s *Server) handleCatalogRegister(w http.ResponseWriter, r *http.Request) {
	var req struct{ Node string }
	if err := json.NewDecoder(io.LimitReader(r.Body, maxValueSize)).Decode(&req); err != nil {
		http.Error(w, "Request decode failed: "+err.Error(), http.StatusBadRequest)
		return
	}
	if req.Node == "" {
		http.Error(w, "Must provide node", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.nodes[req.Node] = true
	idx := s.nextIndex()
	s.mu.Unlock()

	writeJSON(w, idx, true)
}

// newID returns a random session ID in Consul's UUID form.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// writeJSON answers 200 with v and the headers every Consul answer has.
func writeJSON(w http.ResponseWriter, index uint64, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Consul-Index", strconv.FormatUint(max(index, 1), 10))
	h.Set("X-Consul-KnownLeader", "true")
	h.Set("X-Consul-LastContact", "0")
	_ = json.NewEncoder(w).Encode(v) // a write error means the client left
}
