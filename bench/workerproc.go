package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"sync/atomic"
	"syscall"
	"time"
)

type workerProc struct {
	cmd     *exec.Cmd
	enc     *json.Encoder
	replies chan reply
	last    atomic.Pointer[reply]
	done    chan struct{}
}

// loopbackV4 reports whether every URL names an IPv4 loopback address, so
// that workers can dial from loopback addresses of their own.
func loopbackV4(urls []string) bool {
	for _, u := range urls {
		pu, err := url.Parse(u)
		if err != nil {
			return false
		}
		ip := net.ParseIP(pu.Hostname())
		if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// workerSource is the address worker i dials from: 127.0.1.(i+1). A socket
// is one (source, port, node) tuple, so each worker has the whole ephemeral
// port range (about 28,000 here) to every node, whatever the other
// workers and the sockets of a previous run in TIME_WAIT hold.
func workerSource(i int) string {
	return fmt.Sprintf("127.0.%d.%d", 1+i/254, 1+i%254)
}

func startWorker(exe, source string) (*workerProc, error) {
	cmd := exec.Command(exe, "-worker")
	cmd.Env = append(os.Environ(), workerEnv+"=1")
	if source != "" {
		cmd.Env = append(cmd.Env, sourceEnv+"="+source)
	}
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &workerProc{cmd: cmd, enc: json.NewEncoder(in), replies: make(chan reply, 4), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		dec := json.NewDecoder(out)
		for {
			var r reply
			if err := dec.Decode(&r); err != nil {
				close(w.replies)
				_ = cmd.Wait()
				return
			}
			rr := r
			rr.Events = nil
			w.last.Store(&rr)
			if r.Type != "progress" {
				w.replies <- r
			}
		}
	}()
	return w, nil
}

func (w *workerProc) call(ctx context.Context, c command) (reply, error) {
	if err := w.enc.Encode(c); err != nil {
		return reply{}, fmt.Errorf("worker %d: %w", w.cmd.Process.Pid, err)
	}
	select {
	case r, ok := <-w.replies:
		if !ok {
			return reply{}, fmt.Errorf("worker %d exited", w.cmd.Process.Pid)
		}
		if r.Type == "error" {
			return r, fmt.Errorf("worker: %s", r.Err)
		}
		return r, nil
	case <-ctx.Done():
		return reply{}, ctx.Err()
	}
}

func (w *workerProc) stop() {
	_ = w.enc.Encode(command{Cmd: "quit"})
	if c, ok := w.cmd.Stdin.(io.Closer); ok {
		c.Close()
	}
	select {
	case <-w.done:
	case <-time.After(15 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.done
	}
}

func (w *workerProc) progress() reply {
	if p := w.last.Load(); p != nil {
		return *p
	}
	return reply{}
}

// openTabs is how many tabs the workers have open, as of their last
// progress.
func openTabs(wps []*workerProc) int64 {
	var open int64
	for _, w := range wps {
		open += w.progress().Open
	}
	return open
}
