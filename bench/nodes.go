package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"notesync/cluster/local"
	"notesync/internal/localcluster"
)

// nodes is what the tool drives: URLs, and how to stop what it started.
type nodes struct {
	URLs        []string
	MetricsURLs []string // where each serves /metrics
	// Ready is the path that answers 200 once a node takes clients.
	Ready string
	stop  func()
	// restart stops node i (0-based) and has it started again; it returns
	// once the old process has exited.
	restart func(i int) error
	// kill kills node i (0-based) with SIGKILL, LiteFS and app, as a
	// machine dies, and has it started again after hold (cluster only).
	kill func(i int, hold time.Duration) error
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitReady polls url (a node's readiness check) until it answers 200.
func waitReady(ctx context.Context, url string, d time.Duration) error {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		resp, err := c.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
			last = string(b)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s not ready: %s", url, last)
}

// nodeEnv is the environment of the nodes the tool starts: quiet logs, no
// sign-up limit (every user signs up from this machine's address), and a
// bcrypt cost low enough that thousands of users sign up in seconds (a
// node allows it only as a benchmark).
var nodeEnv = []string{"LOG_LEVEL=warn", "SIGNUP_LIMIT=0", "BENCHMARK=true", "BCRYPT_COST=4"}

// startNodes starts one node or a LiteFS cluster (mode single or cluster)
// in a temporary directory, from exe or, without it, a binary it builds
// there. stop() stops every process and removes the directory; on an
// error nothing is left running and the directory is removed.
func startNodes(ctx context.Context, mode, exe, pprofAddr string, logf func(string, ...any)) (*nodes, error) {
	tmp, err := os.MkdirTemp("", "notesync-load-")
	if err != nil {
		return nil, err
	}
	if exe == "" {
		logf("building notesync into %s", tmp)
		exe, err = localcluster.Build(tmp)
	} else {
		exe, err = filepath.Abs(exe)
	}
	var n *nodes
	if err == nil {
		switch mode {
		case "single":
			n, err = startSingle(ctx, tmp, exe, pprofAddr, logf)
		case "cluster":
			n, err = startCluster(ctx, tmp, exe, logf)
		default:
			err = fmt.Errorf("-start must be single or cluster, not %q", mode)
		}
	}
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	stop := n.stop
	n.stop = func() {
		stop()
		os.RemoveAll(tmp)
	}
	return n, nil
}

// startSingle runs one node of exe on 127.0.0.1 (free ports for HTTP and
// metrics; pprof on pprofAddr if set), its data and log in dir, and
// returns once it is ready (at most 60 s). Its restart stops it (proc.kill)
// and starts it again; it has no kill. On an error, and with stop, the
// node is stopped; dir stays, for the caller.
func startSingle(ctx context.Context, dir, exe, pprofAddr string, logf func(string, ...any)) (*nodes, error) {
	port, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	mport, err := freePort("127.0.0.1")
	if err != nil {
		return nil, err
	}
	url := "http://127.0.0.1:" + strconv.Itoa(port)
	murl := "http://127.0.0.1:" + strconv.Itoa(mport)
	args := []string{"-http-addr", "127.0.0.1:" + strconv.Itoa(port), "-data-dir", filepath.Join(dir, "data"),
		"-metrics-addr", "127.0.0.1:" + strconv.Itoa(mport)}
	if pprofAddr != "" {
		args = append(args, "-pprof-addr", pprofAddr)
	}
	logFile, err := os.Create(filepath.Join(dir, "node.log"))
	if err != nil {
		return nil, err
	}
	p := &proc{exe: exe, args: args, env: nodeEnv, log: logFile}
	if err := p.launch(); err != nil {
		logFile.Close()
		return nil, err
	}
	stop := func() {
		p.kill()
		logFile.Close()
	}
	if err := waitReady(ctx, url+"/readyz", 60*time.Second); err != nil {
		stop()
		return nil, err
	}
	logf("node1 ready at %s (pid %d)", url, p.pid())
	restart := func(int) error {
		p.kill()
		return p.launch()
	}
	return &nodes{URLs: []string{url}, MetricsURLs: []string{murl}, Ready: "/readyz", stop: stop, restart: restart}, nil
}

// startCluster runs three LiteFS nodes of exe with local.Launcher under
// dir, their output logged, under a supervisor that starts again a node
// that exits. Its restart stops a node with SIGTERM (SIGKILL to its group
// after 15 s) and leaves it to the supervisor; its kill SIGKILLs a node's
// group with the supervisor paused for the hold. On an error, and with
// stop, every node is stopped; dir stays, for the caller.
func startCluster(ctx context.Context, dir, exe string, logf func(string, ...any)) (*nodes, error) {
	if err := local.CheckFUSE(); err != nil {
		return nil, err
	}
	b, err := localcluster.Find(exe)
	if err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			logf("cluster: %s", sc.Text())
		}
	}()
	l := localcluster.Launcher(b, 3, filepath.Join(dir, "nodes"), nodeEnv...)
	l.Stdout = pw
	// Not localcluster.Run: kill pauses the supervisor.
	if err := l.Open(ctx); err != nil {
		l.Close()
		pw.Close()
		return nil, err
	}
	sup := &supervisor{l: l}
	sup.start()
	stop := func() {
		sup.stop()
		l.Close()
		pw.Close()
	}
	restart := func(i int) error {
		pid, done := l.Node(i + 1)
		// LiteFS stops the app and unmounts; the supervisor starts it again.
		_ = syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-pid, syscall.SIGKILL)
			<-done
		}
		return nil
	}
	kill := func(i int, hold time.Duration) error {
		// Nothing restarts it during hold: its exit waits for the
		// supervisor.
		sup.stop()
		defer sup.start()
		pid, done := l.Node(i + 1)
		if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
			return err
		}
		<-done
		time.Sleep(hold)
		return nil
	}
	return &nodes{URLs: []string{l.URL(1), l.URL(2), l.URL(3)},
		MetricsURLs: []string{l.MetricsURL(1), l.MetricsURL(2), l.MetricsURL(3)}, Ready: "/readyz", stop: stop, restart: restart, kill: kill}, nil
}

// supervisor runs the launcher's Run, which starts again any node that
// exits, and can pause it.
type supervisor struct {
	l      *local.Launcher
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *supervisor) start() {
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() { defer close(s.done); s.l.Run(ctx) }()
}

func (s *supervisor) stop() {
	s.cancel()
	<-s.done
}

// proc is a server process the tool runs, in a process group of its own
// (Ctrl-C reaches only the tool, which stops it), and can restart.
type proc struct {
	exe  string
	args []string
	env  []string
	log  io.Writer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

func (p *proc) launch() error {
	c := exec.Command(p.exe, p.args...)
	c.Env = append(os.Environ(), p.env...)
	c.Stdout, c.Stderr = p.log, p.log
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := c.Start(); err != nil {
		return fmt.Errorf("start %s: %w", filepath.Base(p.exe), err)
	}
	d := make(chan struct{})
	go func() { _ = c.Wait(); close(d) }()
	p.mu.Lock()
	p.cmd, p.done = c, d
	p.mu.Unlock()
	return nil
}

func (p *proc) pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd.Process.Pid
}

// kill stops the process with SIGTERM, and its group with SIGKILL after
// 15 s, and waits for it.
func (p *proc) kill() {
	p.mu.Lock()
	c, d := p.cmd, p.done
	p.mu.Unlock()
	_ = c.Process.Signal(syscall.SIGTERM)
	select {
	case <-d:
	case <-time.After(15 * time.Second):
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		<-d
	}
}

// metrics reads the figures the tool needs from a node's /metrics, summing
// over label sets. The open connections are "connections", whichever
// server's name they have; the tabs they carry are "tabs" (notesync).
func metrics(url string) (map[string]float64, error) {
	all, err := scrape(url)
	if err != nil {
		return nil, err
	}
	m := map[string]float64{}
	for _, name := range []string{"notesync_connections", "centrifugo_node_num_clients", "process_resident_memory_bytes",
		"go_memstats_heap_inuse_bytes", "go_memstats_stack_inuse_bytes", "go_goroutines", "process_cpu_seconds_total"} {
		key := name
		if name == "notesync_connections" || name == "centrifugo_node_num_clients" {
			key = "connections"
		}
		m[key] += sum(series{}, all, name)
	}
	m["tabs"] = sum(series{}, all, "notesync_tabs")
	return m, nil
}
