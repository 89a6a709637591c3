package cluster

import (
	"net"
	"net/http"
)

// Pinner routes requests that a tab pinned to another node (docs/PROTOCOL.md §3: the
// pin lives in the tab's URL, ?node=NAME or ?region=CODE, never in a cookie,
// so each tab of one browser can sit on a different node). On Fly.io the
// request is answered with a fly-replay header and Fly's proxy replays it on
// the right machine; WebSocket and SSE requests included.
type Pinner struct {
	// Node and Machine name this node (a pin may use either); Region is
	// its region.
	Node, Machine, Region string
	// MachineOf returns the Fly machine id of the node named name, if it
	// is a known member.
	MachineOf func(name string) (string, bool)
}

// Wrap returns next behind the pin check. It also takes the client's
// address from Fly-Client-IP, which Fly's proxy sets: the connection itself
// comes from the proxy, and per-address limits must see the client.
func (p *Pinner) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if ip := net.ParseIP(r.Header.Get("Fly-Client-IP")); ip != nil {
			r.RemoteAddr = net.JoinHostPort(ip.String(), "0")
		}
		if replay := p.replay(r); replay != "" {
			w.Header().Set("fly-replay", replay)
			w.WriteHeader(http.StatusConflict)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// replay returns the fly-replay value for a request pinned elsewhere, or "".
func (p *Pinner) replay(r *http.Request) string {
	q := r.URL.Query()
	if node := q.Get("node"); node != "" && node != p.Node && node != p.Machine {
		if m, ok := p.MachineOf(node); ok && m != "" {
			return "instance=" + m
		}
		if looksLikeMachineID(node) {
			return "instance=" + node
		}
		return "" // unknown name: serve here rather than loop
	}
	if region := q.Get("region"); region != "" && region != p.Region && looksLikeRegion(region) {
		return "region=" + region
	}
	return ""
}

// looksLikeMachineID accepts Fly machine ids (14 lowercase hex characters).
func looksLikeMachineID(s string) bool {
	if len(s) != 14 {
		return false
	}
	for _, c := range s {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// looksLikeRegion accepts Fly region codes (three lowercase letters).
func looksLikeRegion(s string) bool {
	if len(s) != 3 {
		return false
	}
	for _, c := range s {
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}
