package main

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"notesync/cluster"
)

// POST /handoff serves only a caller with the token, and names its node.
func TestHandOffHandler(t *testing.T) {
	n := &Node{cluster: &cluster.Node{LiteFS: &cluster.LiteFS{}}, logger: slog.New(slog.DiscardHandler)}
	h := n.handOffHandler("s3cret")
	for _, c := range []struct {
		auth, query string
		want        int
	}{
		{"", "?to=node2", http.StatusUnauthorized},
		{"Bearer wrong", "?to=node2", http.StatusUnauthorized},
		{"s3cret", "?to=node2", http.StatusUnauthorized},
		{"Bearer s3cret", "", http.StatusBadRequest},
		// Not a cluster: nothing to hand the lease to.
		{"Bearer s3cret", "?to=node2", http.StatusServiceUnavailable},
	} {
		req := httptest.NewRequest(http.MethodPost, "/handoff"+c.query, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("%q %q: %d %s, want %d", c.auth, c.query, rec.Code, rec.Body, c.want)
		}
	}
}
