package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// TestPeerProtocol runs a worker against a stand-in for Centrifugo's JSON
// protocol: the connect reply's offset is the greeting, recovered
// publications are deliveries, pushes come several to a frame, and a ping
// is answered.
func TestPeerProtocol(t *testing.T) {
	pong := make(chan string, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ctx := r.Context()
		_, p, err := ws.Read(ctx)
		if err != nil {
			return
		}
		var cmd struct {
			ID      int `json:"id"`
			Connect struct {
				Token string `json:"token"`
				Subs  map[string]struct {
					Recover bool   `json:"recover"`
					Offset  int64  `json:"offset"`
					Epoch   string `json:"epoch"`
				} `json:"subs"`
			} `json:"connect"`
		}
		if json.Unmarshal(p, &cmd) != nil || !validToken(cmd.Connect.Token, "alice") {
			ws.Write(ctx, websocket.MessageText, []byte(`{"id":1,"error":{"code":109,"message":"token"}}`))
			return
		}
		reply := `{"id":1,"connect":{"subs":{"#alice":{"epoch":"e1","offset":4}}}}`
		if s, ok := cmd.Connect.Subs["#alice"]; ok && s.Recover && s.Offset == 2 && s.Epoch == "e1" {
			reply = `{"id":1,"connect":{"subs":{"#alice":{"epoch":"e1","offset":4,"recovered":true,"publications":[{"offset":3},{"offset":4}]}}}}`
		}
		ws.Write(ctx, websocket.MessageText, []byte(reply))
		ws.Write(ctx, websocket.MessageText, []byte("{}\n"+`{"push":{"channel":"#alice","pub":{"offset":5}}}`+"\n"+`{"push":{"channel":"#alice","pub":{"offset":6}}}`))
		if _, p, err := ws.Read(ctx); err == nil {
			pong <- string(p)
		}
		ws.Close(websocket.StatusNormalClosure, "")
	}))
	defer srv.Close()

	w := &worker{}
	if err := w.useSource(""); err != nil {
		t.Fatal(err)
	}
	spec := connSpec{ID: 7, URL: srv.URL, Cookie: peerToken("alice"), Proto: protoCentrifugo, Channel: peerChannel("alice")}
	ws, g, err := w.dialOnce(spec, -1, "")
	if err != nil || g.Version != 4 || g.Epoch != "e1" || len(g.Recovered) != 0 {
		t.Fatalf("first connect: %+v %v", g, err)
	}
	c := &wconn{spec: spec, ws: ws}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, p, err := ws.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	w.peerFrame(c, ws, p, 1)
	select {
	case got := <-pong:
		if got != "{}" {
			t.Errorf("ping answered with %q", got)
		}
	case <-ctx.Done():
		t.Fatal("ping not answered")
	}
	var got []int64
	for _, e := range c.evs {
		got = append(got, e.Version)
	}
	if len(got) != 2 || got[0] != 5 || got[1] != 6 {
		t.Fatalf("deliveries %v, want [5 6]", got)
	}
	ws.CloseNow()

	ws, g, err = w.dialOnce(spec, 2, "e1")
	if err != nil || g.Version != 4 || len(g.Recovered) != 2 || g.Recovered[0] != 3 || g.Recovered[1] != 4 {
		t.Fatalf("reconnect from offset 2: %+v %v", g, err)
	}
	ws.CloseNow()

	spec.Cookie = peerToken("mallory")
	if _, _, err := w.dialOnce(spec, -1, ""); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("a token for someone else: %v", err)
	}
}

// validToken checks an HS256 token's signature with the tool's secret and
// its subject.
func validToken(tok, sub string) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	mac := hmac.New(sha256.New, []byte(peerSecret))
	mac.Write([]byte(parts[0] + "." + parts[1]))
	if base64.RawURLEncoding.EncodeToString(mac.Sum(nil)) != parts[2] {
		return false
	}
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		Sub string `json:"sub"`
	}
	return json.Unmarshal(claims, &c) == nil && c.Sub == sub
}
