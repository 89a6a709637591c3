//go:build unix

package main

// Answers that a client never reads (docs/PROTOCOL.md §8), over the wire.

import (
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"notesync/internal/apitest"
)

// unreadNotes is how many notes of 10,000 three-byte characters the user
// of TestUnreadAnswers holds: a list of about 3 MB, far more than the
// sockets between a node and a client that does not read can hold.
const unreadNotes = 100

func TestUnreadAnswers(t *testing.T) {
	const within = time.Second
	n := startNode(t, func(c *config) { c.writeTimeout, c.WriteRate = within, 0 })
	c := apitest.New(t, n.URL)
	c.SignUp("alice", "password1")
	body := strings.Repeat("漢", 10_000)
	for range unreadNotes {
		c.CreateNote(body)
	}
	resp, list := c.Do("GET", "/api/notes", "", "")
	if resp.StatusCode != 200 || len(list) < unreadNotes*len(body) {
		t.Fatalf("GET /api/notes: %d, %d bytes", resp.StatusCode, len(list))
	}
	host := strings.TrimPrefix(n.URL, "http://")

	t.Run("a client that never reads is cut off within the write deadline", func(t *testing.T) {
		conn := sendUnread(t, host, c.Cookie())
		time.Sleep(3 * within)
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.Copy(io.Discard, conn)
		if isTimeout(err) {
			t.Fatalf("the connection was still open %v after the write deadline (read %d bytes)", 3*within, got)
		}
		if got >= int64(len(list)) {
			t.Fatalf("the whole answer (%d bytes) was kept for a client that did not read it", got)
		}
	})

	t.Run("30 clients that never read do not hold the node's memory", func(t *testing.T) {
		before := heapInuse()
		var conns []net.Conn
		for range 30 {
			conns = append(conns, sendUnread(t, host, c.Cookie()))
		}
		// Thirty answers held would be 30 lists and more; what a node
		// keeps once it has cut them off is noise beside a third of it.
		// The 30 answers are built at once on a busy machine: each may
		// take a while to reach its write deadline.
		bound := int64(10 * len(list))
		var held int64
		for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(within) {
			if held = int64(heapInuse()) - int64(before); held <= bound {
				break
			}
		}
		if held > bound {
			t.Fatalf("30 unread answers hold %d MB of heap a minute after they were asked for (bound %d MB)", held>>20, bound>>20)
		}
		t.Logf("30 unread answers: %d MB of heap left (bound %d MB)", held>>20, bound>>20)
		for _, conn := range conns {
			conn.Close()
		}
		if resp, _ := c.Do("GET", "/healthz", "", ""); resp.StatusCode != 200 {
			t.Fatalf("GET /healthz: %d", resp.StatusCode)
		}
	})
}

// BenchmarkUnreadAnswers: 100 clients ask a node for the first page of
// a list of 200 notes of 10,000 three-byte characters (6 MB, the largest
// page of 200 a user can have) and never read it. It reports the node's
// heap in use above what it was before: at its highest while the clients
// hold their answers (sampled every 100 ms, after a collection), and once
// the write deadline has cut them off (1 s here, so that a run is short;
// 60 s by default).
func BenchmarkUnreadAnswers(b *testing.B) {
	const within, clients = time.Second, 100
	n := startNode(b, func(c *config) { c.writeTimeout, c.WriteRate = within, 0 })
	c := apitest.New(b, n.URL)
	c.SignUp("alice", "password1")
	body := strings.Repeat("漢", 10_000)
	for range 200 {
		c.CreateNote(body)
	}
	host := strings.TrimPrefix(n.URL, "http://")
	var peak, after int64
	for b.Loop() {
		before := int64(heapInuse())
		var conns []net.Conn
		for range clients {
			conns = append(conns, sendUnread(b, host, c.Cookie()))
		}
		for end := time.Now().Add(3 * within); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
			peak = max(peak, int64(heapInuse())-before)
		}
		time.Sleep(2 * within)
		after = max(after, int64(heapInuse())-before)
		for _, conn := range conns {
			conn.Close()
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "MB-held-peak")
	b.ReportMetric(float64(after)/(1<<20), "MB-held-after-deadline")
}

// sendUnread sends GET /api/notes from a socket with a small receive
// buffer and never reads the answer; the socket is closed when the test
// ends.
func sendUnread(t testing.TB, host, cookie string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return errors.Join(err, serr)
	}}
	conn, err := d.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	fmt.Fprintf(conn, "GET /api/notes HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\n\r\n", host, cookie)
	return conn
}

// heapInuse is the process's heap in use after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
