package cluster

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestNodeAlone is a node without LiteFS or peers: the primary, a cluster
// of one, serving every request itself.
func TestNodeAlone(t *testing.T) {
	n := &Node{Name: "node1", Region: "local", Self: func() Meta { return Meta{Region: "local", HTTP: "http://node1"} }}
	if got := n.Members(); len(got) != 1 || got[0].Name != "node1" || got[0].Addr != "http://node1" || got[0].State != "alive" {
		t.Fatalf("members %+v, want node1 alone", got)
	}
	if p := n.Primary(); p != "node1" {
		t.Fatalf("primary %q, want node1", p)
	}
	if r := n.Replication(); r != nil {
		t.Fatalf("replication %+v without LiteFS", r)
	}
	if err := n.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	served := false
	h := n.Pin(n.Forward(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { served = true })))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/api/notes?node=node2", nil))
	if !served {
		t.Fatal("a write on a node alone was not served there")
	}
}

// TestNodeReplicaWithoutPrimary is a replica that knows no primary: a
// write is answered 503, nothing forwarded.
func TestNodeReplicaWithoutPrimary(t *testing.T) {
	n := &Node{Name: "node2", Secret: []byte("s"), LiteFS: liteFSAs(false), Changes: &Changes{},
		Self: func() Meta { return Meta{} }}
	if p := n.Primary(); p != "" {
		t.Fatalf("primary %q, want none", p)
	}
	h := n.Forward(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("a write was served on a replica") }))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/api/notes", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", w.Code)
	}
}
