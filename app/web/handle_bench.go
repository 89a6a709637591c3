package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"notesync/app"
	"notesync/realtime"
)

// BenchPublishType is the type of the message BenchPublishHandler
// publishes.
const BenchPublishType = "bench_publish"

// benchPublish is what BenchPublishHandler publishes: Seq from the request,
// Sent the moment of the Publish call (unix ns), so that a receiver on any
// node of one machine can time the delivery.
type benchPublish struct {
	Type string `json:"type"`
	Seq  int64  `json:"seq"`
	Sent int64  `json:"sent"`
}

// BenchPublishHandler serves POST /debug/publish for the load tool: an
// ephemeral message to every tab of the user whose session cookie the
// request carries, on this node and every other (realtime.Hub.Publish),
// stamped with the time of the call. The body is {"seq": N}; the answer
// {"sent": unix ns, "local": tabs here}. A node serves it only as a
// benchmark, on its metrics address, never on the public port: it lets
// whoever reaches it send any user's tabs messages.
func (s *Server) BenchPublishHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.identify(r)
		if err != nil {
			if errors.Is(err, realtime.ErrUnauthenticated) {
				err = app.Errorf(app.EUNAUTHORIZED, "no session: send the user's session cookie")
			}
			s.writeError(w, r, err)
			return
		}
		var in struct {
			Seq int64 `json:"seq"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<10)).Decode(&in); err != nil {
			s.writeError(w, r, bodyError(err, `malformed JSON: want {"seq": N}`))
			return
		}
		now := time.Now()
		data, _ := json.Marshal(benchPublish{Type: BenchPublishType, Seq: in.Seq, Sent: now.UnixNano()})
		n, err := s.Hub.Publish(u.ID, realtime.Message{Type: BenchPublishType, Data: data})
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]int64{"sent": now.UnixNano(), "local": int64(n)})
	})
}
