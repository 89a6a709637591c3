package local

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"
)

// portForward listens on an address of this machine and relays each
// connection to a node that lives in a network namespace of its own
// (docs/PROTOCOL.md §10): a browser on the machine opens
// http://127.0.0.1:<port> while the node sees only its own network. The
// relay is plain bytes, so WebSocket and SSE pass through; cuts between
// nodes never touch it.
type portForward struct {
	ln     net.Listener
	dial   func(ctx context.Context) (net.Conn, error)
	logger *slog.Logger

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // both ends of every relayed connection
	closed bool
	wg     sync.WaitGroup
}

// forwardDialTimeout bounds the dial into the node: a node that is down
// refuses at once, one that is stopped is given up on.
const forwardDialTimeout = 5 * time.Second

// startForward listens on addr and relays connections to what dial
// reaches, until Close.
func startForward(addr string, dial func(ctx context.Context) (net.Conn, error), logger *slog.Logger) (*portForward, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return serveForward(ln, dial, logger), nil
}

// serveForward relays each connection ln accepts to what dial reaches,
// until Close.
func serveForward(ln net.Listener, dial func(ctx context.Context) (net.Conn, error), logger *slog.Logger) *portForward {
	f := &portForward{ln: ln, dial: dial, logger: logger, conns: map[net.Conn]struct{}{}}
	f.wg.Add(1)
	go f.serve()
	return f
}

func (f *portForward) serve() {
	defer f.wg.Done()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				f.logger.Warn("forward: accept", "addr", f.ln.Addr().String(), "err", err)
			}
			return
		}
		if !f.track(c) {
			c.Close()
			return
		}
		f.wg.Add(1)
		go f.relay(c)
	}
}

// relay dials the node for c and copies both ways. A side that ends
// cleanly half-closes the other (HTTP and WebSocket close that way); an
// error on either side closes both.
func (f *portForward) relay(c net.Conn) {
	defer f.wg.Done()
	defer f.untrack(c)
	ctx, cancel := context.WithTimeout(context.Background(), forwardDialTimeout)
	up, err := f.dial(ctx)
	cancel()
	if err != nil {
		f.logger.Debug("forward: dial node", "addr", f.ln.Addr().String(), "err", err)
		return
	}
	if !f.track(up) {
		up.Close()
		return
	}
	defer f.untrack(up)
	done := make(chan struct{})
	go func() {
		defer close(done)
		pipe(up, c)
	}()
	pipe(c, up)
	<-done
}

// pipe copies src to dst; at src's clean end it half-closes dst, on an
// error it closes both, which ends the copy the other way too.
func pipe(dst, src net.Conn) {
	_, err := io.Copy(dst, src)
	if cw, ok := dst.(interface{ CloseWrite() error }); err == nil && ok {
		_ = cw.CloseWrite()
		return
	}
	dst.Close()
	src.Close()
}

func (f *portForward) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = struct{}{}
	return true
}

func (f *portForward) untrack(c net.Conn) {
	c.Close()
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

// closeConns closes every relayed connection; new ones are still
// accepted.
func (f *portForward) closeConns() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for c := range f.conns {
		c.Close()
	}
}

// Close stops listening, closes every relayed connection and waits for
// the relays to end.
func (f *portForward) Close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.closeConns()
	f.ln.Close()
	f.wg.Wait()
}
