//go:build unix

package realtime

// Benchmarks of the hub over real loopback WebSockets.
//
// The WebSocket clients of every benchmark run in a separate process: the
// test binary itself, re-executed with NOTESYNC_BENCH_CLIENT=1, which makes
// TestMain run the client driver instead of the tests. That
// keeps 10,000 connections within the per-process file limit (one fd per
// side) and leaves the server's CPU and allocation figures free of client
// work. The driver is controlled over its stdin and answers on its stdout
// with lines starting "bench: ":
//
//	dial        open every connection; answers "ready <frames>" once each has read its hello
//	count       answers "count <frames>"
//	wait N MS   answers "count <frames>" once N frames were read, or after MS milliseconds
//	cpu         answers "cpu <ns>", the driver's CPU time (user+system) so far
//	close       drops every connection; answers "closed <frames>"
//	quit / EOF  drops every connection and exits
//
// <frames> is the number of WebSocket messages read so far by all of the
// driver's connections together.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// Environment of the client driver process.
const (
	benchClientEnv = "NOTESYNC_BENCH_CLIENT" // "1": the test binary drives clients (TestMain)
	benchURLEnv    = "NOTESYNC_BENCH_URL"    // ws://127.0.0.1:port/ws
	benchConnsEnv  = "NOTESYNC_BENCH_CONNS"  // connections to open
	benchUsersEnv  = "NOTESYNC_BENCH_USERS"  // connection i belongs to user i%users+1

	// benchHeapProfileEnv names a file for a heap profile taken while
	// BenchmarkIdleConnectionMemory holds its connections open.
	benchHeapProfileEnv = "NOTESYNC_BENCH_HEAPPROFILE"
)

// benchPayload is a note_changed message the size of the ones the app sends.
var benchPayload = []byte(`{"type":"note_changed","op":"updated","note_id":123456,"version":1234567,"node":"node1"}`)

// benchServer is an Endpoint on a loopback test server. A request
// authenticates with X-User: <id>; every user's stream is at version 0.
type benchServer struct {
	hub *Hub
	srv *httptest.Server
	url string

	// progress gets a token whenever a message was written (non-blocking,
	// capacity 1), so a publisher can wait for the hub to catch up.
	progress chan struct{}
	// latency sums ObserveLatency, standing in for the app's histogram.
	latency atomic.Int64

	// clients is the client driver, stopped after the server at cleanup.
	clients *benchClients
}

func newBenchServer(b *testing.B) *benchServer {
	b.Helper()
	s := &benchServer{hub: NewHub(), progress: make(chan struct{}, 1)}
	s.hub.ObserveLatency = func(d time.Duration) {
		s.latency.Add(int64(d))
		select {
		case s.progress <- struct{}{}:
		default:
		}
	}
	ep := &Endpoint{
		Hub: s.hub,
		Authenticate: func(r *http.Request) (Identity, error) {
			id, err := strconv.ParseInt(r.Header.Get("X-User"), 10, 64)
			if err != nil || id <= 0 {
				return Identity{}, ErrUnauthenticated
			}
			return Identity{UserID: id, SessionID: "s" + strconv.FormatInt(id, 10)}, nil
		},
		Version: func(context.Context, int64) (int64, error) { return 0, nil },
		Node:    "bench",
		Region:  "local",
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", ep.ServeWS)
	// httptest binds 127.0.0.1:0. Upgraded connections are hijacked, so the
	// http.Server keeps no goroutine or buffer of its own for them.
	s.srv = httptest.NewServer(mux)
	s.url = "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/ws"
	b.Cleanup(s.close)
	return s
}

// close closes every connection (1001), waits for the handshakes, stops the
// listener, and then the client driver.
func (s *benchServer) close() {
	s.hub.Close(10 * time.Second)
	s.srv.Close()
	if s.clients != nil {
		s.clients.stop()
	}
}

// waitSent waits until the hub has written n messages in all.
func (s *benchServer) waitSent(b *testing.B, n uint64, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for s.hub.sent.Load() < n {
		if time.Now().After(deadline) {
			b.Fatalf("hub wrote %d messages, want %d (%+v)", s.hub.sent.Load(), n, s.hub.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// waitConns waits until the hub holds n connections.
func (s *benchServer) waitConns(b *testing.B, n int64, timeout time.Duration) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for s.hub.conns.Load() != n {
		if time.Now().After(deadline) {
			b.Fatalf("hub holds %d connections, want %d", s.hub.conns.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// checkClean fails the benchmark if any message was dropped or any
// connection was closed as too slow: the publishers pace themselves so that
// neither happens.
func (s *benchServer) checkClean(b *testing.B) {
	b.Helper()
	if st := s.hub.Stats(); st.Dropped != 0 || st.SlowClosed != 0 {
		b.Fatalf("hub dropped messages: %+v", st)
	}
}

// benchClients is a running client driver process.
type benchClients struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	stdout  *os.File
	replies chan string
	stopped bool
}

// startBenchClients starts a driver for conns connections to s spread over
// users users; it is stopped with s. The connections are opened by dial.
func startBenchClients(b *testing.B, s *benchServer, conns, users int) *benchClients {
	b.Helper()
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(),
		benchClientEnv+"=1",
		benchURLEnv+"="+s.url,
		benchConnsEnv+"="+strconv.Itoa(conns),
		benchUsersEnv+"="+strconv.Itoa(users),
	)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stdout = w
	if err := cmd.Start(); err != nil {
		stdin.Close()
		r.Close()
		w.Close()
		b.Fatal(err)
	}
	w.Close()
	c := &benchClients{cmd: cmd, stdin: stdin, stdout: r, replies: make(chan string, 16)}
	s.clients = c
	go func() {
		defer close(c.replies)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if reply, ok := strings.CutPrefix(sc.Text(), "bench: "); ok {
				c.replies <- reply
			}
		}
	}()
	return c
}

// call sends one command and returns the number in the answer, which must
// start with want.
func (c *benchClients) call(b *testing.B, cmd, want string, timeout time.Duration) int64 {
	b.Helper()
	if _, err := io.WriteString(c.stdin, cmd+"\n"); err != nil {
		b.Fatalf("client driver: %s: %v", cmd, err)
	}
	select {
	case reply, ok := <-c.replies:
		if !ok {
			b.Fatalf("client driver exited during %q", cmd)
		}
		f := strings.Fields(reply)
		if len(f) != 2 || f[0] != want {
			b.Fatalf("client driver answered %q to %q", reply, cmd)
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			b.Fatalf("client driver answered %q to %q", reply, cmd)
		}
		return n
	case <-time.After(timeout):
		b.Fatalf("client driver did not answer %q within %v", cmd, timeout)
		return 0
	}
}

// dial opens the connections and returns the frames read so far (one hello
// per connection).
func (c *benchClients) dial(b *testing.B) int64 {
	b.Helper()
	return c.call(b, "dial", "ready", 3*time.Minute)
}

// waitFrames waits until the clients have read n frames in all.
func (c *benchClients) waitFrames(b *testing.B, n int64) int64 {
	b.Helper()
	got := c.call(b, fmt.Sprintf("wait %d %d", n, 60_000), "count", 70*time.Second)
	if got < n {
		b.Fatalf("clients read %d frames, want %d", got, n)
	}
	return got
}

// stop ends the driver: it is asked to exit, and killed (by its PID, through
// exec.Cmd) if it has not within 15 s.
func (c *benchClients) stop() {
	if c.stopped {
		return
	}
	c.stopped = true
	c.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- c.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
	for range c.replies {
	}
	c.stdout.Close()
}

// cpu returns the driver's CPU time so far.
func (c *benchClients) cpu(b *testing.B) time.Duration {
	b.Helper()
	return time.Duration(c.call(b, "cpu", "cpu", 10*time.Second))
}

// processCPU returns the user and system CPU time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time the server and the client processes spent
// per delivery between two readings (timer stopped while reading).
func reportCPU(b *testing.B, c *benchClients, server0, client0 time.Duration, deliveries int64) {
	b.Helper()
	server, client := processCPU()-server0, c.cpu(b)-client0
	b.ReportMetric(float64(server.Nanoseconds())/float64(deliveries), "server-cpu-ns/delivery")
	b.ReportMetric(float64(client.Nanoseconds())/float64(deliveries), "client-cpu-ns/delivery")
}

// setUpBench starts a server and a client driver with conns connections of
// users users, opens them, and waits until every hello was written and read.
// It returns the frames read so far.
func setUpBench(b *testing.B, conns, users int) (*benchServer, *benchClients, int64) {
	b.Helper()
	s := newBenchServer(b)
	c := startBenchClients(b, s, conns, users)
	frames := c.dial(b)
	s.waitConns(b, int64(conns), time.Minute)
	s.waitSent(b, uint64(conns), time.Minute)
	return s, c, frames
}

// BenchmarkBroadcastOneUserThreeTabs broadcasts to one user with three open
// tabs. One op is one Broadcast, that is three deliveries; the publisher
// keeps at most 16 ops in flight (48 messages, under QueueSize however they
// are spread), and the time includes waiting until the clients have read
// everything.
func BenchmarkBroadcastOneUserThreeTabs(b *testing.B) {
	const tabs, window = 3, 16
	s, c, frames := setUpBench(b, tabs, 1)
	sent0 := s.hub.sent.Load()
	client0, server0 := c.cpu(b), processCPU()

	b.ReportAllocs()
	var ops int64
	for b.Loop() {
		ops++
		for int64(s.hub.sent.Load()-sent0) < (ops-window)*tabs {
			<-s.progress
		}
		s.hub.Broadcast(1, Message{Type: "note_changed", Version: ops, Data: benchPayload, Created: time.Now()})
	}
	b.StartTimer()
	c.waitFrames(b, frames+ops*tabs)
	b.StopTimer()

	reportCPU(b, c, server0, client0, ops*tabs)
	s.checkClean(b)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(ops*tabs), "ns/delivery")
}

// BenchmarkBroadcast10kConnections broadcasts to 3,334 users with three tabs
// each (10,002 connections). One op broadcasts one message to every user
// (10,002 deliveries) from one goroutine, as the change feed does; the
// publisher keeps at most 4 ops in flight. deliveries/s is frames read by the
// clients over the wall time, including the wait for the last frame.
func BenchmarkBroadcast10kConnections(b *testing.B) {
	const users, tabs, window = 3334, 3, 4
	const conns = users * tabs
	s, c, frames := setUpBench(b, conns, users)
	sent0 := s.hub.sent.Load()
	client0, server0 := c.cpu(b), processCPU()

	b.ReportAllocs()
	var ops int64
	for b.Loop() {
		ops++
		for int64(s.hub.sent.Load()-sent0) < (ops-window)*conns {
			time.Sleep(100 * time.Microsecond)
		}
		m := Message{Type: "note_changed", Version: ops, Data: benchPayload, Created: time.Now()}
		for u := int64(1); u <= users; u++ {
			s.hub.Broadcast(u, m)
		}
	}
	b.StartTimer()
	got := c.waitFrames(b, frames+ops*conns)
	b.StopTimer()

	delivered := got - frames
	reportCPU(b, c, server0, client0, delivered)
	s.checkClean(b)
	b.ReportMetric(float64(delivered)/b.Elapsed().Seconds(), "deliveries/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(delivered), "ns/delivery")
}

// memSample is what the server process uses at one moment.
type memSample struct {
	heapStack  uint64 // HeapInuse + StackInuse after GCs
	stack      uint64 // StackInuse
	rss        uint64 // VmRSS
	goroutines int
}

func sampleMem(b *testing.B) memSample {
	b.Helper()
	// Two collections: the second also frees what only sync.Pools (the
	// net/http buffer pools) held, which belongs to no connection.
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{
		heapStack:  ms.HeapInuse + ms.StackInuse,
		stack:      ms.StackInuse,
		rss:        vmRSS(b),
		goroutines: runtime.NumGoroutine(),
	}
}

// vmRSS reads the resident set size of this process.
func vmRSS(b *testing.B) uint64 {
	b.Helper()
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skipf("no /proc/self/status: %v", err)
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("VmRSS line %q", line)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmRSS in /proc/self/status")
	return 0
}

// writeHeapProfile writes the heap profile as of the last GC to path.
func writeHeapProfile(b *testing.B, path string) {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		b.Fatal(err)
	}
}

// settleGoroutines waits until the number of goroutines has not changed for
// 200 ms (at most 10 s), so that goroutines still finishing are not counted.
func settleGoroutines() {
	deadline := time.Now().Add(10 * time.Second)
	last, same := runtime.NumGoroutine(), 0
	for same < 10 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		if n := runtime.NumGoroutine(); n == last {
			same++
		} else {
			last, same = n, 0
		}
	}
}

// BenchmarkIdleConnectionMemory opens 19,000 authenticated WebSocket
// connections (about 3 tabs for each of 6,334 users; 19,000 is as many as
// the 20,000 open files a process may have here allow, on the server's side
// and on the client process's) that then stay idle, and reports what
// each costs the server process: heap in use plus stacks after garbage
// collection, resident memory, and goroutines. One op is opening all of them
// (until every hello was written); the measurement and the teardown are
// outside the timer. Run it with -benchtime 1x.
//
// The baseline is taken after debug.FreeOSMemory, so memory the process
// held before (earlier benchmarks) does not hide the connections' share.
// rss-B/conn is measured after garbage collection only; rss-freed-B/conn
// after freed memory has also been returned to the OS.
//
// With NOTESYNC_BENCH_HEAPPROFILE=file, a heap profile is written to file
// while the connections are open (go tool pprof -sample_index=inuse_space).
func BenchmarkIdleConnectionMemory(b *testing.B) {
	const users, conns = 6334, 19000
	s := newBenchServer(b)
	c := startBenchClients(b, s, conns, users)

	b.ReportAllocs()
	var heapStack, stack, rss, rssFreed, goroutines, allocs float64
	iters := 0
	for b.Loop() {
		b.StopTimer()
		settleGoroutines()
		debug.FreeOSMemory()
		before := sampleMem(b)
		sent0 := s.hub.sent.Load()
		var ms0 runtime.MemStats
		runtime.ReadMemStats(&ms0)
		b.StartTimer()

		c.dial(b)
		s.waitConns(b, conns, time.Minute)
		s.waitSent(b, sent0+conns, time.Minute)

		b.StopTimer()
		var ms1 runtime.MemStats
		runtime.ReadMemStats(&ms1)
		settleGoroutines()
		after := sampleMem(b)
		if path := os.Getenv(benchHeapProfileEnv); path != "" {
			writeHeapProfile(b, path)
		}
		debug.FreeOSMemory()
		freed := vmRSS(b)

		heapStack += float64(int64(after.heapStack-before.heapStack)) / conns
		stack += float64(int64(after.stack-before.stack)) / conns
		rss += float64(int64(after.rss-before.rss)) / conns
		rssFreed += float64(int64(freed-before.rss)) / conns
		goroutines += float64(after.goroutines-before.goroutines) / conns
		allocs += float64(ms1.Mallocs-ms0.Mallocs) / conns
		iters++

		// Drop the connections so that a further op starts from none.
		c.call(b, "close", "closed", time.Minute)
		s.waitConns(b, 0, time.Minute)
		b.StartTimer()
	}
	s.checkClean(b)
	n := float64(iters)
	b.ReportMetric(heapStack/n, "heap+stack-B/conn")
	b.ReportMetric(stack/n, "stack-B/conn")
	b.ReportMetric(rss/n, "rss-B/conn")
	b.ReportMetric(rssFreed/n, "rss-freed-B/conn")
	b.ReportMetric(goroutines/n, "goroutines/conn")
	b.ReportMetric(allocs/n, "allocs/conn")
}

// TestMain turns the test binary into the benchmarks' client driver when a
// benchmark starts it with NOTESYNC_BENCH_CLIENT set; otherwise it runs the
// package's tests and benchmarks as usual.
func TestMain(m *testing.M) {
	if os.Getenv(benchClientEnv) != "" {
		if err := runBenchClients(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "bench client:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runBenchClients serves the driver's commands (see the top of this file)
// until "quit" or the end of in.
func runBenchClients(in io.Reader, out io.Writer) error {
	url := os.Getenv(benchURLEnv)
	conns, err := strconv.Atoi(os.Getenv(benchConnsEnv))
	if err != nil || conns <= 0 {
		return fmt.Errorf("%s=%q", benchConnsEnv, os.Getenv(benchConnsEnv))
	}
	users, err := strconv.Atoi(os.Getenv(benchUsersEnv))
	if err != nil || users <= 0 {
		return fmt.Errorf("%s=%q", benchUsersEnv, os.Getenv(benchUsersEnv))
	}
	reply := func(format string, args ...any) {
		fmt.Fprintf(out, "bench: "+format+"\n", args...)
	}

	var (
		frames  atomic.Int64
		readers sync.WaitGroup
		open    []*websocket.Conn
	)
	client := &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: -1}}
	dialOne := func(user int) (*websocket.Conn, error) {
		h := http.Header{}
		h.Set("X-User", strconv.Itoa(user))
		var err error
		for attempt := 0; attempt < 3; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			var ws *websocket.Conn
			ws, _, err = websocket.Dial(ctx, url, &websocket.DialOptions{HTTPClient: client, HTTPHeader: h})
			cancel()
			if err == nil {
				return ws, nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return nil, err
	}
	read := func(ws *websocket.Conn) {
		defer readers.Done()
		for {
			_, r, err := ws.Reader(context.Background())
			if err != nil {
				return
			}
			if _, err := io.Copy(io.Discard, r); err != nil {
				return
			}
			frames.Add(1)
		}
	}
	dialAll := func() error {
		const parallel = 64
		next := make(chan int)
		errs := make(chan error, parallel)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range parallel {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					ws, err := dialOne(i%users + 1)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					open = append(open, ws)
					mu.Unlock()
					readers.Add(1)
					go read(ws)
				}
			}()
		}
		var err error
	feed:
		for i := range conns {
			select {
			case next <- i:
			case err = <-errs:
				break feed
			}
		}
		close(next)
		wg.Wait()
		if err == nil {
			select {
			case err = <-errs:
			default:
			}
		}
		return err
	}
	closeAll := func() {
		for _, ws := range open {
			ws.CloseNow()
		}
		open = nil
		readers.Wait()
	}
	defer closeAll()

	sc := bufio.NewScanner(in)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		switch f[0] {
		case "dial":
			base := frames.Load()
			if err := dialAll(); err != nil {
				reply("error %v", err)
				return err
			}
			// Every connection's hello is the first frame it reads.
			deadline := time.Now().Add(time.Minute)
			for frames.Load() < base+int64(len(open)) {
				if time.Now().After(deadline) {
					reply("error %d hellos read, want %d", frames.Load()-base, len(open))
					return errors.New("hellos missing")
				}
				time.Sleep(time.Millisecond)
			}
			reply("ready %d", frames.Load())
		case "count":
			reply("count %d", frames.Load())
		case "cpu":
			reply("cpu %d", processCPU())
		case "wait":
			if len(f) != 3 {
				return fmt.Errorf("bad command %q", sc.Text())
			}
			n, err1 := strconv.ParseInt(f[1], 10, 64)
			ms, err2 := strconv.Atoi(f[2])
			if err := errors.Join(err1, err2); err != nil {
				return fmt.Errorf("bad command %q: %v", sc.Text(), err)
			}
			deadline := time.Now().Add(time.Duration(ms) * time.Millisecond)
			for frames.Load() < n && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			reply("count %d", frames.Load())
		case "close":
			closeAll()
			reply("closed %d", frames.Load())
		case "quit":
			return nil
		default:
			return fmt.Errorf("unknown command %q", sc.Text())
		}
	}
	return sc.Err()
}
