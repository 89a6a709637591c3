package realtime

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"time"
)

// batchConn is the TCP connection under a WebSocket. The connection's
// writer sends a drained batch with one writev(2): hold starts the batch,
// queue adds a message's frame, release sends them all. The frames are the
// messages' own bytes, built once per message (Message.frame) and shared by
// every recipient, so nothing is encoded or copied per recipient.
// coder/websocket, which reads the connection and writes its control
// frames (pong, ping, close), writes through Write: straight to the socket
// outside a batch, with the batch inside one.
//
// Every write to the socket happens under mu, so frames leave in the order
// they were queued or written, and never interleave: the library flushes
// each control frame whole (its buffer, frameBufferSize, holds the
// largest).
type batchConn struct {
	net.Conn
	try *tryWriter // nil: every send waits with a deadline

	mu        sync.Mutex
	held      bool
	deadline  time.Time   // of the held batch
	armed     bool        // the socket's write deadline is set to deadline
	pending   net.Buffers // the held frames
	out       net.Buffers // what a send has left to write (WriteTo consumes it)
	size      int         // bytes in pending
	vec       *net.Buffers
	err       error // the first failed write of the held batch
	closeSent bool  // a close frame has been written: no data may follow
	finAfter  bool  // drop the connection once the held batch is sent (goAway)
}

var batchVecs = sync.Pool{New: func() any { v := make(net.Buffers, 0, 16); return &v }}

// errCloseSent is a data frame queued after the close frame.
var errCloseSent = errors.New("realtime: close frame already sent")

// hold starts a batch whose writes give up at deadline.
func (b *batchConn) hold(deadline time.Time) {
	b.mu.Lock()
	b.held, b.deadline, b.err = true, deadline, nil
	b.vec = batchVecs.Get().(*net.Buffers)
	b.pending = (*b.vec)[:0]
	b.mu.Unlock()
}

// queue adds one data frame to the held batch. The frame is not copied:
// it must not change until release returns.
func (b *batchConn) queue(frame []byte) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil {
		return b.err
	}
	if b.closeSent {
		return errCloseSent
	}
	b.pending = append(b.pending, frame)
	b.size += len(frame)
	return nil
}

// release sends the held frames, waiting up to the batch's deadline, and
// ends the batch. It returns the first error of any write in the batch;
// after one, the connection is closed, since a frame may have been cut
// short.
func (b *batchConn) release() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.held {
		return nil
	}
	if b.err == nil {
		b.sendLocked()
	}
	b.endLocked()
	return b.err
}

// releaseNow sends what the socket takes of the held frames at once. If
// that is all of them it ends the batch; otherwise the rest stays held,
// and pending is true: release sends it.
func (b *batchConn) releaseNow() (pending bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err == nil && b.size > 0 {
		n, err := b.try.write(b.pending)
		switch {
		case err != nil:
			b.fail(err)
		case n < b.size:
			consume(&b.pending, n)
			b.size -= n
			return true, nil
		default:
			b.size = 0
		}
	}
	b.endLocked()
	return false, b.err
}

// goAway sends frame, a close frame, and then drops the connection,
// without waiting for the client's answer: a socket that cannot take the
// frame at once is dropped all the same. In the middle of a batch, both
// follow the batch.
func (b *batchConn) goAway(frame []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closeSent {
		return
	}
	b.closeSent = true
	if b.held {
		b.pending = append(b.pending, frame)
		b.size += len(frame)
		b.finAfter = true
		return
	}
	if b.try == nil {
		// No write without waiting here: wait a little.
		_ = b.Conn.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := b.Conn.Write(frame)
		_ = b.Conn.SetWriteDeadline(time.Time{})
		if err != nil {
			_ = b.Conn.Close()
			return
		}
	} else {
		_, _ = b.try.write(net.Buffers{frame})
	}
	// The library's reader sees the socket closed and lets go of it.
	_ = b.Conn.Close()
}

// endLocked ends the batch and returns its vector to the pool.
func (b *batchConn) endLocked() {
	if b.finAfter {
		b.finAfter = false
		_ = b.Conn.Close()
	}
	b.disarmLocked()
	// pending may have been consumed from the front or have outgrown the
	// pooled array: clear both from their starts.
	clear(b.pending[:cap(b.pending)])
	full := (*b.vec)[:cap(*b.vec)]
	clear(full)
	*b.vec = full[:0]
	batchVecs.Put(b.vec)
	b.held, b.pending, b.vec, b.size = false, nil, nil, 0
}

// Write is how coder/websocket flushes its frames.
func (b *batchConn) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(p) > 0 && p[0] == 0x88 { // FIN + close: the library's last frame
		b.closeSent = true
	}
	if !b.held {
		b.disarmLocked()
		return b.Conn.Write(p)
	}
	if b.err != nil {
		return 0, b.err
	}
	b.pending = append(b.pending, append([]byte(nil), p...))
	b.size += len(p)
	return len(p), nil
}

// sendLocked writes the pending frames: first without waiting, then, if
// the socket's buffer is full, under the batch's deadline. On failure it
// records the error and closes the connection.
func (b *batchConn) sendLocked() {
	if b.size == 0 {
		return
	}
	n, err := b.try.write(b.pending)
	if err == nil && n == b.size {
		clear(b.pending)
		b.pending, b.size = b.pending[:0], 0
		return
	}
	if err != nil {
		b.fail(err)
		return
	}
	b.out = b.pending
	consume(&b.out, n)
	if !b.armed {
		_ = b.Conn.SetWriteDeadline(b.deadline)
		b.armed = true
	}
	_, err = b.out.WriteTo(b.Conn) // consumes out; pending is kept for reuse
	b.out = nil
	clear(b.pending)
	b.pending, b.size = b.pending[:0], 0
	if err != nil {
		b.fail(err)
	}
}

// fail records a failed write and closes the connection: a frame may have
// been cut short.
func (b *batchConn) fail(err error) {
	b.err = err
	_ = b.Conn.Close()
}

// consume drops the first n bytes of v.
func consume(v *net.Buffers, n int) {
	for n > 0 && len(*v) > 0 {
		if m := len((*v)[0]); m <= n {
			*v, n = (*v)[1:], n-m
		} else {
			(*v)[0], n = (*v)[0][n:], 0
		}
	}
}

// disarmLocked clears the socket's write deadline.
func (b *batchConn) disarmLocked() {
	if b.armed {
		_ = b.Conn.SetWriteDeadline(time.Time{})
		b.armed = false
	}
}

// timedOut reports whether err is a write that ran past its deadline.
func timedOut(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// appendTextFrame appends data as one unmasked, final WebSocket text frame
// (RFC 6455 §5.2), as a server sends it.
func appendTextFrame(b, data []byte) []byte {
	n := len(data)
	b = append(b, 0x81) // FIN + text
	switch {
	case n <= 125:
		b = append(b, byte(n))
	case n <= 0xffff:
		b = append(b, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return append(b, data...)
}

// appendCloseFrame appends a close frame with code and reason (at most 123
// bytes).
func appendCloseFrame(b []byte, code StatusCode, reason string) []byte {
	reason = reason[:min(len(reason), 123)]
	b = append(b, 0x88, byte(2+len(reason)), byte(code>>8), byte(code))
	return append(b, reason...)
}

// frameBufferSize is the library's own write buffer, which only its
// control frames (at most 2 + 125 bytes) pass through. net/http's 4 KiB
// buffer, which the library would keep for the connection's life, is
// dropped.
const frameBufferSize = 256

// batchHijacker gives coder/websocket a batchConn to write to.
type batchHijacker struct {
	http.ResponseWriter
	conn *batchConn
}

func (h *batchHijacker) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.conn = &batchConn{Conn: nc, try: newTryWriter(nc)}
	brw.Writer = bufio.NewWriterSize(h.conn, frameBufferSize)
	return h.conn, brw, nil
}
