// Package apitest is the tests' one HTTP client of a notesync node: a
// person with a cookie jar (one browser), who signs up, calls the API and
// opens sockets, on one node or on any node of a cluster (the nodes of a
// local cluster differ by port only, and cookies are per host, so one
// session serves them all). Only test code imports it.
package apitest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Client is one browser's session against Base.
type Client struct {
	T    testing.TB
	Base string       // the node paths are relative to
	HTTP *http.Client // with the cookie jar; redirects are not followed
}

// New returns a client of base with an empty cookie jar.
func New(t testing.TB, base string) *Client {
	jar, _ := cookiejar.New(nil)
	return &Client{T: t, Base: base, HTTP: &http.Client{
		Jar:     jar,
		Timeout: 15 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// target is path on Base, or path itself when it is a URL (another node).
func (c *Client) target(path string) string {
	if strings.HasPrefix(path, "http://") || strings.HasPrefix(path, "https://") {
		return path
	}
	return c.Base + path
}

// SignUp creates an account through the form and keeps its session cookie.
func (c *Client) SignUp(username, password string) {
	c.T.Helper()
	resp, body := c.Form("/signup", url.Values{"username": {username}, "password": {password}})
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		c.T.Fatalf("sign up %s on %s: %d %s, want 303 to /", username, c.Base, resp.StatusCode, body)
	}
}

// Form posts a form and returns the response with its body read.
func (c *Client) Form(path string, v url.Values) (*http.Response, string) {
	c.T.Helper()
	return c.Do("POST", path, "application/x-www-form-urlencoded", v.Encode())
}

// Do sends a request (path on Base, or a URL) with header given as name,
// value pairs, and returns the response with its body read. A request that
// gets no answer fails the test.
func (c *Client) Do(method, path, contentType, body string, header ...string) (*http.Response, string) {
	c.T.Helper()
	resp, b, err := c.send(method, path, contentType, body, header...)
	if err != nil {
		c.T.Fatal(err)
	}
	return resp, b
}

// Try is Do for a request that may get no answer (a node cut off or
// down): the error is returned. A body is sent as JSON.
func (c *Client) Try(method, path, body string, header ...string) (status int, respBody string, h http.Header, err error) {
	ct := ""
	if body != "" {
		ct = "application/json"
	}
	resp, b, err := c.send(method, path, ct, body, header...)
	if err != nil {
		return 0, "", nil, err
	}
	return resp.StatusCode, b, resp.Header, nil
}

func (c *Client) send(method, path, contentType, body string, header ...string) (*http.Response, string, error) {
	req, err := http.NewRequest(method, c.target(path), strings.NewReader(body))
	if err != nil {
		return nil, "", err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, string(b), err
}

// CreateNote posts a note as JSON and returns its id and the version it
// made; anything but 201 fails the test.
func (c *Client) CreateNote(body string, header ...string) (id, version int64) {
	c.T.Helper()
	b, _ := json.Marshal(map[string]string{"body": body})
	resp, out := c.Do("POST", "/api/notes", "application/json", string(b), header...)
	if resp.StatusCode != http.StatusCreated {
		c.T.Fatalf("create note: %d %s", resp.StatusCode, out)
	}
	var r struct {
		Note    struct{ ID int64 } `json:"note"`
		Version int64              `json:"version"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		c.T.Fatalf("create note: %s: %v", out, err)
	}
	return r.Note.ID, r.Version
}

// Cookie is the Cookie header the client sends to Base.
func (c *Client) Cookie() string {
	u, _ := url.Parse(c.Base)
	var parts []string
	for _, ck := range c.HTTP.Jar.Cookies(u) {
		parts = append(parts, ck.Name+"="+ck.Value)
	}
	return strings.Join(parts, "; ")
}

// Dial opens a WebSocket at /ws+query on base (a node's URL) with the
// client's session.
func (c *Client) Dial(base, query string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	h := http.Header{}
	if ck := c.Cookie(); ck != "" {
		h.Set("Cookie", ck)
	}
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(base, "http")+"/ws"+query, &websocket.DialOptions{HTTPHeader: h})
	return ws, err
}

// DialWS is Dial on Base, failing the test when it does not open; the
// socket is closed when the test ends.
func (c *Client) DialWS(query string) *websocket.Conn {
	c.T.Helper()
	ws, err := c.Dial(c.Base, query)
	if err != nil {
		c.T.Fatalf("dial /ws%s: %v", query, err)
	}
	c.T.Cleanup(func() { ws.CloseNow() })
	return ws
}

// Event is a real-time message as a client sees it (docs/PROTOCOL.md §4):
// a hello, a note_changed or a sync.
type Event struct {
	Type    string `json:"type"`
	Op      string `json:"op"`
	NoteID  int64  `json:"note_id"`
	Version int64  `json:"version"`
	Node    string `json:"node"`
	Region  string `json:"region"`
	// Change names the change at Version (docs/PROTOCOL.md §11), and
	// Diverged marks a sync that starts the tab's history again.
	Change   string `json:"change"`
	Diverged bool   `json:"diverged"`
}

// Next reads the next message of ws within d, passing over presence
// messages (their tests look at them on their own).
func Next(ws *websocket.Conn, d time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		_, p, err := ws.Read(ctx)
		if err != nil {
			return nil, err
		}
		var m struct{ Type string }
		if json.Unmarshal(p, &m) != nil || m.Type != "presence" {
			return p, nil
		}
	}
}

// WaitRefused returns once addr (host:port) refuses TCP connections, as a
// node whose listener is closed does, or an error after within.
func WaitRefused(addr string, within time.Duration) error {
	for deadline := time.Now().Add(within); ; {
		conn, err := net.DialTimeout("tcp", addr, 500*time.Millisecond)
		if err != nil {
			return nil
		}
		conn.Close()
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still accepts connections after %v", addr, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
