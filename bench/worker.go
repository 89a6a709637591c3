package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// The coordinator and its worker processes talk JSON over the worker's
// stdin and stdout: one command in, one reply out, plus unsolicited
// "progress" replies every 500 ms.

// workerEnv marks a re-executed process as a worker (also `-worker`).
const workerEnv = "NOTESYNC_LOAD_WORKER"

// sourceEnv is the loopback address a worker dials from (unset: the
// kernel's choice). Each worker gets its own, so that its sockets have a
// whole ephemeral port range per node instead of sharing one.
const sourceEnv = "NOTESYNC_LOAD_SOURCE"

type connSpec struct {
	ID     int    `json:"id"`
	User   int    `json:"user"`
	Node   int    `json:"node"` // index into the URL list
	URL    string `json:"url"`
	Cookie string `json:"cookie"` // notesync's session cookie; the peer's token
	Proto  string `json:"proto,omitempty"`
	// Channel is the user's channel on the peer.
	Channel string `json:"channel,omitempty"`
	// Tabs, above 1, is how many tabs the connection carries: it reports
	// them after every hello, as a browser's shared connection does.
	Tabs int `json:"tabs,omitempty"`
}

// The protocols a worker speaks.
const (
	protoNotesync   = ""           // docs/PROTOCOL.md §4
	protoCentrifugo = "centrifugo" // Centrifugo's JSON protocol (bench/centrifugo.go)
)

type command struct {
	Cmd         string     `json:"cmd"` // dial, dump, quit
	Conns       []connSpec `json:"conns,omitempty"`
	Concurrency int        `json:"concurrency,omitempty"`
	StaleEvery  int        `json:"stale_every,omitempty"`
}

// event is one thing a connection saw.
type event struct {
	Conn int    `json:"c"`
	Kind string `json:"k"` // hello, reconnect, changed, sync, close, eph, presence
	// Version is the version of hello, changed, sync and reconnect, and
	// the publish's sequence number of eph.
	Version int64 `json:"v,omitempty"`
	At      int64 `json:"t"` // arrival, UnixNano
	Code    int   `json:"code,omitempty"`
	// Sent is when an eph was published (unix ns, as its message says).
	Sent int64 `json:"s,omitempty"`
	// Nodes is a presence's tabs per node.
	Nodes map[string]int `json:"n,omitempty"`
}

type reply struct {
	Type   string  `json:"type"` // progress, dialed, dump, error
	Opened int64   `json:"opened"`
	Failed int64   `json:"failed"`
	Err    string  `json:"err,omitempty"`
	Events []event `json:"events,omitempty"`
	// Counters.
	Deliveries  int64 `json:"deliveries"`
	Closes      int64 `json:"closes"`
	Open        int64 `json:"open"`
	StaleChecks int64 `json:"stale_checks"`
	Stale       int64 `json:"stale"`
	StaleErrors int64 `json:"stale_errors"`
}

type wconn struct {
	spec  connSpec
	mu    sync.Mutex
	ws    *websocket.Conn
	evs   []event
	last  int64
	epoch string // the peer's stream epoch
}

func (c *wconn) add(e event) {
	c.mu.Lock()
	c.evs = append(c.evs, e)
	if (e.Kind == "changed" || e.Kind == "sync" || e.Kind == "hello" || e.Kind == "reconnect") && e.Version > c.last {
		c.last = e.Version
	}
	c.mu.Unlock()
}

type worker struct {
	outMu sync.Mutex
	enc   *json.Encoder

	quitting   atomic.Bool
	staleEvery int64
	pushes     atomic.Int64
	opened     atomic.Int64
	failed     atomic.Int64
	deliveries atomic.Int64
	closes     atomic.Int64
	open       atomic.Int64
	staleCk    atomic.Int64
	stale      atomic.Int64
	staleErr   atomic.Int64
	readers    sync.WaitGroup
	connsMu    sync.Mutex
	conns      []*wconn
	httpc      *http.Client // stale-check GETs
	wsc        *http.Client // WebSocket handshakes
}

// useSource makes the worker's sockets and requests start from source (an
// IP address; "" for the kernel's choice).
func (w *worker) useSource(source string) error {
	d := &net.Dialer{Timeout: 10 * time.Second}
	if source != "" {
		ip := net.ParseIP(source)
		if ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("source %q is not a loopback address", source)
		}
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	w.httpc = &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{Proxy: nil, DialContext: d.DialContext, MaxConnsPerHost: 32, MaxIdleConnsPerHost: 32},
	}
	w.wsc = &http.Client{Transport: &http.Transport{Proxy: nil, DialContext: d.DialContext}}
	return nil
}

func (w *worker) send(r reply) {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	_ = w.enc.Encode(r)
}

func (w *worker) counters(typ string) reply {
	return reply{Type: typ, Opened: w.opened.Load(), Failed: w.failed.Load(),
		Deliveries: w.deliveries.Load(), Closes: w.closes.Load(), Open: w.open.Load(),
		StaleChecks: w.staleCk.Load(), Stale: w.stale.Load(), StaleErrors: w.staleErr.Load()}
}

// runWorker serves commands from in until "quit" or the end of in.
func runWorker(in io.Reader, out io.Writer) error {
	signal.Ignore(os.Interrupt) // the coordinator stops us by closing stdin
	w := &worker{enc: json.NewEncoder(out)}
	if err := w.useSource(os.Getenv(sourceEnv)); err != nil {
		return err
	}
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				w.send(w.counters("progress"))
			}
		}
	}()
	dec := json.NewDecoder(in)
	for {
		var cmd command
		if err := dec.Decode(&cmd); err != nil {
			w.closeAll()
			if err == io.EOF {
				return nil
			}
			return err
		}
		switch cmd.Cmd {
		case "dial":
			w.staleEvery = int64(cmd.StaleEvery)
			w.dialAll(cmd.Conns, cmd.Concurrency)
			w.send(w.counters("dialed"))
		case "dump":
			r := w.counters("dump")
			w.connsMu.Lock()
			for _, c := range w.conns {
				c.mu.Lock()
				r.Events = append(r.Events, c.evs...)
				c.mu.Unlock()
			}
			w.connsMu.Unlock()
			w.send(r)
		case "quit":
			w.closeAll()
			w.send(w.counters("quit"))
			return nil
		default:
			w.send(reply{Type: "error", Err: "unknown command " + cmd.Cmd})
		}
	}
}

func (w *worker) closeAll() {
	w.quitting.Store(true)
	w.connsMu.Lock()
	conns := append([]*wconn(nil), w.conns...)
	w.connsMu.Unlock()
	for _, c := range conns {
		c.mu.Lock()
		ws := c.ws
		c.mu.Unlock()
		if ws != nil {
			ws.CloseNow()
		}
	}
	done := make(chan struct{})
	go func() { w.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
}

// wsURL is the socket URL; since < 0 leaves since out (a first dial).
func wsURL(base string, since int64) string {
	u := "ws" + strings.TrimPrefix(base, "http") + "/ws"
	if since >= 0 {
		u += "?since=" + strconv.FormatInt(since, 10)
	}
	return u
}

type msg struct {
	Type    string `json:"type"`
	Op      string `json:"op"`
	Version int64  `json:"version"`
	// bench_publish (web.BenchPublishType)
	Seq  int64 `json:"seq"`
	Sent int64 `json:"sent"`
	// presence
	Nodes map[string]int `json:"nodes"`
}

// greeting is what a (re)connected socket was told first: the user's
// version, and for the peer its stream epoch and the offsets it recovered.
type greeting struct {
	Version   int64
	Epoch     string
	Recovered []int64
}

// dialOnce opens one socket and reads its greeting; since < 0 is a first
// dial, epoch the peer's stream epoch as last seen.
func (w *worker) dialOnce(spec connSpec, since int64, epoch string) (*websocket.Conn, greeting, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	u := wsURL(spec.URL, since)
	hdr := http.Header{"Cookie": {spec.Cookie}}
	if spec.Proto == protoCentrifugo {
		u, hdr = "ws"+strings.TrimPrefix(spec.URL, "http")+"/connection/websocket", nil
	}
	ws, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: w.wsc, HTTPHeader: hdr})
	if err != nil {
		return nil, greeting{}, err
	}
	var g greeting
	if spec.Proto == protoCentrifugo {
		g, err = peerConnect(ctx, ws, spec, since, epoch)
	} else if g, err = readHello(ctx, ws); err == nil && spec.Tabs > 1 {
		err = ws.Write(ctx, websocket.MessageText, tabsReport(spec.Tabs))
	}
	if err != nil {
		ws.CloseNow()
		return nil, greeting{}, err
	}
	return ws, g, nil
}

// tabsReport is what a connection that n tabs share says of them, none
// with an editor open.
func tabsReport(n int) []byte {
	tabs := make(map[string]any, n)
	for i := range n {
		tabs[fmt.Sprintf("tab%d", i)] = nil
	}
	b, _ := json.Marshal(map[string]any{"type": "tabs", "tabs": tabs})
	return b
}

func readHello(ctx context.Context, ws *websocket.Conn) (greeting, error) {
	_, p, err := ws.Read(ctx)
	if err != nil {
		return greeting{}, fmt.Errorf("reading hello: %w", err)
	}
	var m msg
	if err := json.Unmarshal(p, &m); err != nil || m.Type != "hello" {
		return greeting{}, fmt.Errorf("first message is not hello: %s", p)
	}
	return greeting{Version: m.Version}, nil
}

func (w *worker) dialAll(specs []connSpec, concurrency int) {
	if concurrency <= 0 {
		concurrency = 64
	}
	sem := make(chan struct{}, concurrency)
	var wg sync.WaitGroup
	var firstErr atomic.Value
	for _, s := range specs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var ws *websocket.Conn
			var g greeting
			var err error
			for attempt := 0; attempt < 3; attempt++ {
				if ws, g, err = w.dialOnce(s, -1, ""); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if err != nil {
				w.failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			c := &wconn{spec: s, ws: ws, epoch: g.Epoch}
			c.add(event{Conn: s.ID, Kind: "hello", Version: g.Version, At: time.Now().UnixNano()})
			w.connsMu.Lock()
			w.conns = append(w.conns, c)
			w.connsMu.Unlock()
			w.opened.Add(1)
			w.open.Add(1)
			w.readers.Add(1)
			go w.read(c)
		}()
	}
	wg.Wait()
}

// read records every message of c, and reconnects with since= after a
// close that the worker did not ask for.
func (w *worker) read(c *wconn) {
	defer w.readers.Done()
	ws := c.ws
	for {
		_, p, err := ws.Read(context.Background())
		if err != nil {
			w.open.Add(-1)
			if w.quitting.Load() {
				return
			}
			w.closes.Add(1)
			c.add(event{Conn: c.spec.ID, Kind: "close", Code: int(websocket.CloseStatus(err)), At: time.Now().UnixNano()})
			ws = w.reconnect(c)
			if ws == nil {
				return
			}
			w.open.Add(1)
			continue
		}
		at := time.Now().UnixNano()
		if c.spec.Proto == protoCentrifugo {
			w.peerFrame(c, ws, p, at)
			continue
		}
		var m msg
		if json.Unmarshal(p, &m) != nil {
			continue
		}
		switch m.Type {
		case "bench_publish":
			c.add(event{Conn: c.spec.ID, Kind: "eph", Version: m.Seq, Sent: m.Sent, At: at})
			continue
		case "presence":
			c.add(event{Conn: c.spec.ID, Kind: "presence", Nodes: m.Nodes, At: at})
			continue
		case "note_changed":
		default:
			continue
		}
		kind := "changed"
		if m.Op == "sync" {
			kind = "sync"
		}
		w.delivered(c, kind, m.Version, at)
	}
}

// delivered records a note_changed (or the peer's publication) and now and
// then checks the node for a stale read.
func (w *worker) delivered(c *wconn, kind string, v, at int64) {
	c.add(event{Conn: c.spec.ID, Kind: kind, Version: v, At: at})
	w.deliveries.Add(1)
	if kind == "changed" && w.staleEvery > 0 && w.pushes.Add(1)%w.staleEvery == 0 {
		go w.checkStale(c.spec, v)
	}
}

// Reconnect backoff, as the page (app/web/static/transport.js) does it: exponential
// with full jitter, capped, so that the tabs of a restarted node spread
// their reconnects instead of arriving in one wave.
const (
	backoffBase = 500 * time.Millisecond
	backoffCap  = 10 * time.Second
	backoffMin  = 250 * time.Millisecond
)

// backoff is the wait before reconnect attempt n (0-based).
func backoff(n int) time.Duration {
	limit := backoffCap
	if n < 16 && backoffBase<<n < backoffCap {
		limit = backoffBase << n
	}
	return max(backoffMin, rand.N(limit))
}

func (w *worker) reconnect(c *wconn) *websocket.Conn {
	for attempt := 0; attempt < 50 && !w.quitting.Load(); attempt++ {
		time.Sleep(backoff(attempt))
		c.mu.Lock()
		since, epoch := c.last, c.epoch
		c.mu.Unlock()
		ws, g, err := w.dialOnce(c.spec, since, epoch)
		if err != nil {
			continue
		}
		at := time.Now().UnixNano()
		c.add(event{Conn: c.spec.ID, Kind: "reconnect", Version: g.Version, At: at})
		for _, v := range g.Recovered {
			w.delivered(c, "changed", v, at)
		}
		c.mu.Lock()
		c.ws = ws
		c.epoch = g.Epoch
		c.mu.Unlock()
		if w.quitting.Load() {
			ws.CloseNow()
		}
		return ws
	}
	return nil
}

// checkStale GETs the notes on the connection's node right after a push
// and checks that they are at least at the pushed version.
func (w *worker) checkStale(spec connSpec, v int64) {
	req, _ := http.NewRequest("GET", spec.URL+"/api/notes", nil)
	req.Header.Set("Cookie", spec.Cookie)
	resp, err := w.httpc.Do(req)
	if err != nil {
		w.staleErr.Add(1)
		return
	}
	defer resp.Body.Close()
	var out struct {
		Version int64 `json:"version"`
	}
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&out) != nil {
		w.staleErr.Add(1)
		return
	}
	w.staleCk.Add(1)
	if out.Version < v {
		w.stale.Add(1)
	}
}
