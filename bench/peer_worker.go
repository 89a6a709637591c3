package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/coder/websocket"
)

// The workers' side of the peer: Centrifugo's JSON protocol over a
// WebSocket. A frame holds one or more JSON messages, one per line.

// peerSub is a subscription's state in a connect reply.
type peerSub struct {
	Epoch        string `json:"epoch"`
	Offset       int64  `json:"offset"`
	Recovered    bool   `json:"recovered"`
	Publications []struct {
		Offset int64 `json:"offset"`
	} `json:"publications"`
}

// peerMsg is one message from the server: a reply (id set), a push, or an
// empty ping.
type peerMsg struct {
	ID      int `json:"id"`
	Connect *struct {
		Subs map[string]peerSub `json:"subs"`
	} `json:"connect"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Push *struct {
		Channel string `json:"channel"`
		Pub     *struct {
			Offset int64 `json:"offset"`
			Data   struct {
				Seq  int64 `json:"bench_seq"`
				Sent int64 `json:"sent"`
			} `json:"data"`
		} `json:"pub"`
	} `json:"push"`
}

// peerConnect sends the connect command (with the token, and on a
// reconnect the position to recover from) and reads its reply: the
// stream's offset is the greeting's version, what was recovered its
// catch-up.
func peerConnect(ctx context.Context, ws *websocket.Conn, spec connSpec, since int64, epoch string) (greeting, error) {
	connect := map[string]any{"token": spec.Cookie, "name": "notesync-bench"}
	if since >= 0 {
		connect["subs"] = map[string]any{spec.Channel: map[string]any{"recover": true, "offset": since, "epoch": epoch}}
	}
	cmd, _ := json.Marshal(map[string]any{"id": 1, "connect": connect})
	if err := ws.Write(ctx, websocket.MessageText, cmd); err != nil {
		return greeting{}, fmt.Errorf("sending connect: %w", err)
	}
	for {
		_, p, err := ws.Read(ctx)
		if err != nil {
			return greeting{}, fmt.Errorf("reading the connect reply: %w", err)
		}
		for _, line := range bytes.Split(p, []byte("\n")) {
			var m peerMsg
			if len(line) == 0 || json.Unmarshal(line, &m) != nil || m.ID != 1 {
				continue
			}
			if m.Error != nil {
				return greeting{}, fmt.Errorf("connect refused: %d %s", m.Error.Code, m.Error.Message)
			}
			if m.Connect == nil {
				return greeting{}, fmt.Errorf("connect reply without connect: %s", line)
			}
			sub, ok := m.Connect.Subs[spec.Channel]
			if !ok {
				return greeting{}, fmt.Errorf("connect reply not subscribed to %s: %s", spec.Channel, line)
			}
			g := greeting{Version: sub.Offset, Epoch: sub.Epoch}
			if since >= 0 && sub.Recovered {
				for _, pub := range sub.Publications {
					g.Recovered = append(g.Recovered, pub.Offset)
				}
			}
			return g, nil
		}
	}
}

// peerFrame handles one frame from the peer: publications are deliveries,
// an empty message is a ping, answered with an empty pong.
func (w *worker) peerFrame(c *wconn, ws *websocket.Conn, p []byte, at int64) {
	for _, line := range bytes.Split(p, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if string(line) == "{}" {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = ws.Write(ctx, websocket.MessageText, []byte("{}"))
			cancel()
			continue
		}
		var m peerMsg
		if json.Unmarshal(line, &m) != nil || m.Push == nil || m.Push.Pub == nil || m.Push.Channel != c.spec.Channel {
			continue
		}
		if pub := m.Push.Pub; pub.Offset == 0 && pub.Data.Seq > 0 {
			// An ephemeral publish (no history, no offset).
			c.add(event{Conn: c.spec.ID, Kind: "eph", Version: pub.Data.Seq, Sent: pub.Data.Sent, At: at})
			continue
		}
		w.delivered(c, "changed", m.Push.Pub.Offset, at)
	}
}
