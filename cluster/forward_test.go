package cluster

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// primaryApp records what reaches the primary.
func primaryApp(t *testing.T, delay time.Duration) (*httptest.Server, chan *http.Request) {
	got := make(chan *http.Request, 10)
	f := &Forwarder{Secret: []byte("s3cret"), Node: "node1", IsPrimary: func() bool { return true }, PrimaryURL: func() string { return "" },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	h := f.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		time.Sleep(delay)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"version":1}`)
	}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, got
}

func replica(t *testing.T, primary string, timeout time.Duration) *httptest.Server {
	f := &Forwarder{Secret: []byte("s3cret"), Node: "node2", IsPrimary: func() bool { return false },
		PrimaryURL: func() string { return primary }, Timeout: timeout,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(f.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "served locally")
	})))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(`{"body":"x"}`))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestForwarder(t *testing.T) {
	t.Run("a write on a replica reaches the primary with the client's address and the cookie", func(t *testing.T) {
		p, got := primaryApp(t, 0)
		r := replica(t, p.URL, time.Second)
		resp, body := post(t, r.URL+"/api/notes?x=1", "Cookie", "notesync_session=abc")
		if resp.StatusCode != http.StatusCreated || body != `{"version":1}` {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		in := <-got
		if host, _, _ := net.SplitHostPort(in.RemoteAddr); host != "127.0.0.1" {
			t.Fatalf("primary saw client %q", in.RemoteAddr)
		}
		if in.Header.Get("Cookie") != "notesync_session=abc" || in.URL.RawQuery != "x=1" {
			t.Fatalf("forwarded request lost something: %v %q", in.Header, in.URL.RawQuery)
		}
		if in.Header.Get(HeaderSignature) != "" {
			t.Fatal("forwarding headers reached the handler")
		}
	})

	t.Run("reads on a replica are served locally", func(t *testing.T) {
		r := replica(t, "http://127.0.0.1:1", time.Second)
		resp, err := http.Get(r.URL + "/api/notes")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "served locally" {
			t.Fatalf("got %q", b)
		}
	})

	t.Run("forged or tampered headers are refused with 403", func(t *testing.T) {
		p, got := primaryApp(t, 0)
		resp, body := post(t, p.URL+"/api/notes", HeaderFrom, "node2", HeaderClient, "1.2.3.4", HeaderDeadline, "99999999999999", HeaderSignature, "forged")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "error") {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		if len(got) != 0 {
			t.Fatal("a forged request reached the handler")
		}
		f := &Forwarder{Secret: []byte("s3cret")}
		req := httptest.NewRequest("POST", "/api/notes", nil)
		sig := f.sign(signedOf(req, []byte(`{"body":"x"}`), "1.2.3.4", "99999999999999", "node2", "n1"))
		// A signature for another client address does not verify.
		resp, _ = post(t, p.URL+"/api/notes", HeaderFrom, "node2", HeaderClient, "5.6.7.8", HeaderDeadline, "99999999999999", HeaderNonce, "n1", HeaderSignature, sig)
		if resp.StatusCode != http.StatusForbidden {
			t.Fatalf("tampered client address: %d", resp.StatusCode)
		}
	})

	t.Run("no primary reachable: 503 with Retry-After, nothing sent", func(t *testing.T) {
		l, _ := net.Listen("tcp", "127.0.0.1:0")
		dead := "http://" + l.Addr().String()
		l.Close()
		r := replica(t, dead, time.Second)
		resp, body := post(t, r.URL+"/api/notes")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		r2 := replica(t, "", time.Second)
		if resp, _ := post(t, r2.URL+"/api/notes"); resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("unknown primary: %d", resp.StatusCode)
		}
	})

	t.Run("a primary that does not answer in time: 504, outcome unknown", func(t *testing.T) {
		p, _ := primaryApp(t, 2*time.Second)
		r := replica(t, p.URL, 300*time.Millisecond)
		start := time.Now()
		resp, body := post(t, r.URL+"/api/notes")
		if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get("Retry-After") == "" || time.Since(start) > time.Second {
			t.Fatalf("%d %s after %v", resp.StatusCode, body, time.Since(start))
		}
	})
}

func TestForwardedRequestCannotBeReplayed(t *testing.T) {
	p, got := primaryApp(t, 0)
	// Between the replica and the primary, something records what passes.
	type captured struct {
		header http.Header
		body   []byte
	}
	caught := make(chan captured, 1)
	tap := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		caught <- captured{r.Header.Clone(), body}
		req, _ := http.NewRequest(r.Method, p.URL+r.URL.RequestURI(), bytes.NewReader(body))
		req.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, resp.Body)
	}))
	defer tap.Close()
	r := replica(t, tap.URL, 2*time.Second)
	if resp, body := post(t, r.URL+"/api/notes", "Cookie", "notesync_session=alice"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("forwarded write: %d %s", resp.StatusCode, body)
	}
	<-got
	c := <-caught

	replay := func(cookie, body string) int {
		req, _ := http.NewRequest("POST", p.URL+"/api/notes", strings.NewReader(body))
		req.Header = c.header.Clone()
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, tc := range []struct{ what, cookie, body string }{
		{"as it was", "", string(c.body)},
		{"with another cookie", "notesync_session=mallory", string(c.body)},
		{"with another body", "", `{"body":"mallory's"}`},
	} {
		if status := replay(tc.cookie, tc.body); status != http.StatusForbidden {
			t.Errorf("replayed %s: %d, want 403", tc.what, status)
		}
	}
	if len(got) != 0 {
		t.Fatal("a replayed request reached the handler")
	}
	// A fresh forwarded write still goes through.
	if resp, body := post(t, r.URL+"/api/notes", "Cookie", "notesync_session=alice"); resp.StatusCode != http.StatusCreated {
		t.Fatalf("second forwarded write: %d %s", resp.StatusCode, body)
	}
}

func TestForwardedStreamOutlivesTheDeadline(t *testing.T) {
	f := &Forwarder{Secret: []byte("s3cret"), Node: "node1", IsPrimary: func() bool { return true }, PrimaryURL: func() string { return "" },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	p := httptest.NewServer(f.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		for i := 0; i < 4; i++ {
			io.WriteString(w, "data: tick\n\n")
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(150 * time.Millisecond):
			}
		}
		io.WriteString(w, "data: done\n\n")
	})))
	defer p.Close()
	r := replica(t, p.URL, 200*time.Millisecond)
	resp, body := post(t, r.URL+"/api/assistant")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "data: done") {
		t.Fatalf("a stream longer than the forward deadline was cut: %d %q", resp.StatusCode, body)
	}
}

func TestForwarderOnFly(t *testing.T) {
	primary := "instance=6e82d49b"
	f := &Forwarder{Secret: []byte("s"), Node: "r", IsPrimary: func() bool { return false },
		FlyReplay: func() string { return primary }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	srv := httptest.NewServer(f.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Error("a write was served on a replica")
	})))
	defer srv.Close()
	resp, _ := post(t, srv.URL+"/api/notes")
	if got := resp.Header.Get("fly-replay"); got != primary {
		t.Fatalf("fly-replay %q, want %q", got, primary)
	}
	primary = ""
	if resp, _ := post(t, srv.URL+"/api/notes"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("unknown primary on Fly: %d", resp.StatusCode)
	}
}

func TestParsePos(t *testing.T) {
	txid, checksum, err := parsePos("00000000000000a1/8f9e1c2b3a4d5e6f\n")
	if err != nil || txid != 0xa1 || checksum != 0x8f9e1c2b3a4d5e6f {
		t.Fatalf("%d %x %v", txid, checksum, err)
	}
	if _, _, err := parsePos("garbage"); err == nil {
		t.Fatal("garbage parsed")
	}
}

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

	resp, err := http.Post(srv.URL+"/internal/x", "application/json", nil)
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

// A forwarded write that the primary's handler gives up on when the
// replica's deadline cuts its context (a write waiting for another node
// to hold it, say) and answers nothing is not relayed as a 200 with no
// body: its outcome is unknown, and the client is told to retry with its
// Idempotency-Key.
func TestForwardedWriteCutShortAnswersUnknown(t *testing.T) {
	f := &Forwarder{Secret: []byte("s3cret"), Node: "node1", IsPrimary: func() bool { return true }, PrimaryURL: func() string { return "" },
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	p := httptest.NewServer(f.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // committed, waiting; then cut short, and silent
	})))
	defer p.Close()
	r := replica(t, p.URL, 300*time.Millisecond)
	resp, body := post(t, r.URL+"/api/notes")
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, "Idempotency-Key") {
		t.Fatalf("a forwarded write cut short answered %d %q (Retry-After %q), want 504 saying to retry with the same key",
			resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
}
