package cluster

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSend(t *testing.T) {
	from := make(chan string, 2)
	primary := &Forwarder{Secret: []byte("s3cret"), Node: "node1", IsPrimary: func() bool { return true },
		PrimaryURL: func() string { return "" }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(primary.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		from <- ForwardedFrom(r)
		io.WriteString(w, "got "+string(b))
	})))
	t.Cleanup(srv.Close)

	node2 := &Forwarder{Secret: []byte("s3cret"), Node: "node2"}
	status, answer, err := node2.send(context.Background(), srv.URL+"/internal/x", []byte(`{"a":1}`))
	if err != nil || status != http.StatusOK || string(answer) != `got {"a":1}` {
		t.Fatalf("%d %q %v", status, answer, err)
	}
	if got := <-from; got != "node2" {
		t.Fatalf("forwarded from %q, want node2", got)
	}

	resp, err := http.Post(srv.URL+"/internal/x", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := <-from; got != "" {
		t.Fatalf("a client's request is forwarded from %q", got)
	}

	forger := &Forwarder{Secret: []byte("not it"), Node: "node3"}
	if status, _, err := forger.send(context.Background(), srv.URL+"/internal/x", nil); err != nil || status != http.StatusForbidden {
		t.Fatalf("signed with another secret: %d %v, want 403", status, err)
	}
}
