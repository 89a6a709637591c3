package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"notesync/cluster"
)

// nodes is what the tool drives: URLs, and how to stop what it started.
type nodes struct {
	URLs        []string
	MetricsURLs []string
	stop        func()
	// restart stops node i (0-based) and has it started again; it returns
	// once the old process has exited.
	restart func(i int) error
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run inside the notesync module")
	}
	return filepath.Dir(mod), nil
}

// buildBinary builds notesync into dir.
func buildBinary(root, dir string) (string, error) {
	exe := filepath.Join(dir, "notesync")
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return exe, nil
}

func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", host+":0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func waitReady(ctx context.Context, url string, d time.Duration) error {
	c := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(d)
	last := ""
	for time.Now().Before(deadline) {
		resp, err := c.Get(url + "/readyz")
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

// nodeEnv is the environment of the nodes the tool starts: quiet logs, and
// no sign-up limit (every user signs up from this machine's address).
var nodeEnv = []string{"LOG_LEVEL=warn", "SIGNUP_LIMIT=0"}

// startNodes starts one node or a LiteFS cluster in a temporary directory.
// stop() stops every process and removes the directory.
func startNodes(ctx context.Context, mode, exe, pprofAddr string, logf func(string, ...any)) (*nodes, error) {
	root, err := moduleRoot()
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp("", "notesync-load-")
	if err != nil {
		return nil, err
	}
	if exe == "" {
		logf("building notesync into %s", tmp)
		if exe, err = buildBinary(root, tmp); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
	} else if exe, err = filepath.Abs(exe); err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	switch mode {
	case "single":
		port, err := freePort("127.0.0.1")
		if err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		mport, err := freePort("127.0.0.1")
		if err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		murl := "http://127.0.0.1:" + strconv.Itoa(mport)
		args := []string{"-http-addr", "127.0.0.1:" + strconv.Itoa(port), "-data-dir", filepath.Join(tmp, "data"),
			"-metrics-addr", "127.0.0.1:" + strconv.Itoa(mport)}
		if pprofAddr != "" {
			args = append(args, "-pprof-addr", pprofAddr)
		}
		logFile, err := os.Create(filepath.Join(tmp, "node.log"))
		if err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		var mu sync.Mutex
		var cmd *exec.Cmd
		var done chan struct{}
		launch := func() error {
			c := exec.Command(exe, args...)
			c.Env = append(os.Environ(), nodeEnv...)
			c.Stdout, c.Stderr = logFile, logFile
			// A group of its own: Ctrl-C reaches only us, and we stop it.
			c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
			if err := c.Start(); err != nil {
				return err
			}
			d := make(chan struct{})
			go func() { _ = c.Wait(); close(d) }()
			mu.Lock()
			cmd, done = c, d
			mu.Unlock()
			return nil
		}
		kill := func() {
			mu.Lock()
			c, d := cmd, done
			mu.Unlock()
			_ = c.Process.Signal(syscall.SIGTERM)
			select {
			case <-d:
			case <-time.After(15 * time.Second):
				_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
				<-d
			}
		}
		if err := launch(); err != nil {
			logFile.Close()
			os.RemoveAll(tmp)
			return nil, err
		}
		stop := func() {
			kill()
			logFile.Close()
			os.RemoveAll(tmp)
		}
		if err := waitReady(ctx, url, 60*time.Second); err != nil {
			stop()
			return nil, err
		}
		logf("node1 ready at %s (pid %d)", url, cmd.Process.Pid)
		restart := func(int) error {
			kill()
			return launch()
		}
		return &nodes{URLs: []string{url}, MetricsURLs: []string{murl}, stop: stop, restart: restart}, nil
	case "cluster":
		if err := cluster.CheckFUSE(); err != nil {
			os.RemoveAll(tmp)
			return nil, err
		}
		gt := exec.Command("go", "tool", "-n", "litefs")
		gt.Dir = root
		out, err := gt.Output()
		if err != nil {
			os.RemoveAll(tmp)
			return nil, fmt.Errorf("go tool -n litefs: %w", err)
		}
		// A loopback address of its own keeps it clear of other clusters.
		host := fmt.Sprintf("127.0.%d.%d", 10+rand.IntN(200), 2+rand.IntN(250))
		pr, pw := io.Pipe()
		go func() {
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				logf("cluster: %s", sc.Text())
			}
		}()
		l := &cluster.Launcher{
			N: 3, BasePort: 18081, Host: host, Dir: filepath.Join(tmp, "nodes"),
			Exe: exe, LiteFS: strings.TrimSpace(string(out)), Config: filepath.Join(root, "litefs.yml"),
			ExtraEnv: nodeEnv, Stdout: pw,
		}
		cctx, cancel := context.WithCancel(context.Background())
		if err := l.Start(ctx); err != nil {
			cancel()
			l.Stop()
			pw.Close()
			os.RemoveAll(tmp)
			return nil, err
		}
		sup := make(chan struct{})
		go func() { defer close(sup); l.Supervise(cctx) }()
		stop := func() {
			cancel()
			<-sup
			l.Stop()
			pw.Close()
			os.RemoveAll(tmp)
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
		return &nodes{URLs: []string{l.URL(1), l.URL(2), l.URL(3)},
			MetricsURLs: []string{l.MetricsURL(1), l.MetricsURL(2), l.MetricsURL(3)}, stop: stop, restart: restart}, nil
	}
	os.RemoveAll(tmp)
	return nil, fmt.Errorf("-start must be single or cluster, not %q", mode)
}

// metrics reads the figures the tool needs from a node's /metrics, summing
// over label sets.
func metrics(url string) (map[string]float64, error) {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	want := map[string]bool{
		"notesync_connections": true, "process_resident_memory_bytes": true,
		"go_memstats_heap_inuse_bytes": true, "go_memstats_stack_inuse_bytes": true,
		"go_goroutines": true, "process_cpu_seconds_total": true,
	}
	m := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if !want[name] {
			continue
		}
		f := strings.Fields(line[strings.LastIndex(line, "}")+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			m[name] += v
		}
	}
	return m, sc.Err()
}
