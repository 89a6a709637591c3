package local

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// nodeProcAttr puts a node's LiteFS in a process group of its own (Close
// and Run signal the group: LiteFS and its app), and has the kernel
// stop it when the launcher dies, however it dies.
func nodeProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}

// CheckNetns reports whether this process can run a cluster with -netns:
// root, and the ip and nft commands.
func CheckNetns() error {
	if os.Geteuid() != 0 {
		return errors.New("-netns needs root, to create network namespaces: run it as root (sudo)")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return errors.New("-netns needs a kernel with network namespaces (CONFIG_NET_NS)")
	}
	for tool, pkg := range map[string]string{"ip": "iproute2", "nft": "nftables"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("-netns needs the %s command: apt-get install %s", tool, pkg)
		}
	}
	return nil
}

// inNetns runs fn on an OS thread that has joined the network namespace
// ns, then returns the thread to host. A socket keeps the namespace it was
// made in, and a child process starts in its parent thread's namespace, so
// what fn dials or starts lives in ns. The thread stays alive afterwards:
// a child started with Pdeathsig is signalled when the thread that started
// it ends. Only if the thread cannot return to host does it end with its
// goroutine, rather than serve other goroutines in the wrong namespace.
func inNetns(host, ns *os.File, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("join network namespace %s: %w", ns.Name(), err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(host.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("return from network namespace %s: %w", ns.Name(), err))
			return // still locked: Go ends the thread with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// netnsPids lists the processes whose network namespace is the one bound
// at path.
func netnsPids(path string) []int {
	var want syscall.Stat_t
	if err := syscall.Stat(path, &want); err != nil {
		return nil
	}
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		var st syscall.Stat_t
		if syscall.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st) == nil && st.Ino == want.Ino && st.Dev == want.Dev {
			pids = append(pids, pid)
		}
	}
	return pids
}
