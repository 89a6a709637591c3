package realtime

import (
	"bytes"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// countingConn is a net.Conn that records each Write; with block set, a
// Write waits until the write deadline and fails as a socket would.
type countingConn struct {
	net.Conn
	mu       sync.Mutex
	writes   [][]byte
	block    bool
	deadline time.Time
	closed   bool
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	block, dl := c.block, c.deadline
	c.mu.Unlock()
	if block {
		time.Sleep(time.Until(dl))
		return 0, &net.OpError{Op: "write", Err: os.ErrDeadlineExceeded}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, append([]byte(nil), p...))
	return len(p), nil
}

func (c *countingConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return nil
}

func (c *countingConn) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	return nil
}

func TestBatchConn(t *testing.T) {
	t.Run("a held batch waits for release and leaves in order", func(t *testing.T) {
		cc := &countingConn{}
		b := &batchConn{Conn: cc}
		b.hold(time.Now().Add(time.Second))
		b.queue(appendTextFrame(nil, []byte("one")))
		b.Write([]byte{0x89, 0}) // the library's ping, inside the batch
		b.queue(appendTextFrame(nil, []byte("two")))
		if len(cc.writes) != 0 {
			t.Fatalf("wrote %d times before release", len(cc.writes))
		}
		if err := b.release(); err != nil {
			t.Fatal(err)
		}
		want := "\x81\x03one\x89\x00\x81\x03two"
		if got := string(bytes.Join(cc.writes, nil)); got != want {
			t.Fatalf("sent %q, want %q", got, want)
		}
		if !cc.deadline.IsZero() {
			t.Error("the batch's deadline outlived it")
		}
		n := len(cc.writes)
		b.Write([]byte{0x8a, 0}) // a pong outside a batch
		if len(cc.writes) != n+1 {
			t.Fatal("a write outside a batch did not go straight out")
		}
	})

	t.Run("no data frame follows the close frame", func(t *testing.T) {
		cc := &countingConn{}
		b := &batchConn{Conn: cc}
		b.hold(time.Now().Add(time.Second))
		b.queue(appendTextFrame(nil, []byte("before")))
		b.Write([]byte{0x88, 2, 0x03, 0xe9}) // close 1001
		if err := b.queue(appendTextFrame(nil, []byte("after"))); err == nil {
			t.Fatal("a frame was queued after the close frame")
		}
		b.release()
		if got := string(bytes.Join(cc.writes, nil)); strings.Contains(got, "after") || !strings.Contains(got, "before") {
			t.Fatalf("sent %q", got)
		}
	})

	t.Run("frames of every length", func(t *testing.T) {
		for _, n := range []int{0, 125, 126, 0xffff, 0x10000} {
			f := appendTextFrame(nil, bytes.Repeat([]byte("x"), n))
			hdr := map[bool]int{true: 2}[n <= 125] + map[bool]int{true: 4}[n > 125 && n <= 0xffff] + map[bool]int{true: 10}[n > 0xffff]
			if len(f) != hdr+n || f[0] != 0x81 {
				t.Errorf("frame of %d bytes: length %d, first byte %#x", n, len(f), f[0])
			}
		}
	})

	t.Run("a write past the deadline fails as such and closes the socket", func(t *testing.T) {
		cc := &countingConn{block: true}
		b := &batchConn{Conn: cc}
		b.hold(time.Now().Add(50 * time.Millisecond))
		b.queue(appendTextFrame(nil, []byte("frame")))
		err := b.release()
		if !timedOut(err) {
			t.Fatalf("release: %v, want a deadline error", err)
		}
		if !cc.closed {
			t.Error("socket left open after a cut-short write")
		}
	})
}
