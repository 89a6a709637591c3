package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// eventStream stands in for LiteFS's GET /events: each connection is sent
// the next batch of role events, one JSON object a line; the last batch
// ends with a tx event (so the test knows every event before it was
// handled), and its connection is held open until the test ends.
func eventStream(t *testing.T, batches ...[]bool) *httptest.Server {
	t.Helper()
	var n atomic.Int32
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(n.Add(1)) - 1
		if i >= len(batches) {
			<-r.Context().Done()
			return
		}
		for j, primary := range batches[i] {
			typ := "primaryChange"
			if j == 0 {
				typ = "init"
			}
			fmt.Fprintf(w, `{"type":%q,"data":{"isPrimary":%v,"hostname":"h"}}`+"\n", typ, primary)
			w.(http.Flusher).Flush()
		}
		if i < len(batches)-1 {
			return // drop the stream: the node reconnects
		}
		fmt.Fprintln(w, `{"type":"tx","data":{"txID":"0000000000000001"}}`)
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-done:
		}
	}))
	t.Cleanup(func() { close(done); srv.Close() })
	return srv
}

func TestLiteFSPromotionIsAnEvent(t *testing.T) {
	for _, c := range []struct {
		name    string
		batches [][]bool
		want    int32
	}{
		{"a node that starts as primary is not promoted", [][]bool{{true}}, 0},
		{"a replica that becomes primary is promoted once", [][]bool{{false, true}}, 1},
		{"a replica told it is primary after its stream dropped is promoted", [][]bool{{false}, {true}}, 1},
		{"primary, replica, primary again: promoted once", [][]bool{{true, false, true}}, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			srv := eventStream(t, c.batches...)
			var promoted atomic.Int32
			l := &LiteFS{Dir: t.TempDir(), API: srv.URL, OnPromoted: func() { promoted.Add(1) }}
			ctx, cancel := context.WithCancel(context.Background())
			done, tx := make(chan struct{}), make(chan struct{}, 1)
			go func() {
				defer close(done)
				l.FollowEvents(ctx, func(t Tx) {
					if t.TXID != 0 {
						tx <- struct{}{}
					}
				}, slog.New(slog.NewTextHandler(io.Discard, nil)))
			}()
			select {
			case <-tx: // every role event was handled
			case <-time.After(5 * time.Second):
				t.Fatal("the stream's events were not all read")
			}
			cancel()
			<-done
			last := c.batches[len(c.batches)-1]
			if l.said != map[bool]string{true: "primary", false: "replica"}[last[len(last)-1]] {
				t.Errorf("the last role said was %q", l.said)
			}
			if got := promoted.Load(); got != c.want {
				t.Errorf("promoted %d times, want %d", got, c.want)
			}
		})
	}
}
