//go:build !linux

package local

import (
	"errors"
	"os"
	"runtime"
	"syscall"
)

var errNetnsOS = errors.New("-netns needs Linux network namespaces; this is " + runtime.GOOS)

// CheckNetns reports whether this process can run a cluster with -netns:
// never, on this system.
func CheckNetns() error { return errNetnsOS }

func inNetns(host, ns *os.File, fn func() error) error { return errNetnsOS }

func netnsPids(path string) []int { return nil }

// nodeProcAttr puts a node's LiteFS in a process group of its own; only
// Linux can also stop it when the launcher dies.
func nodeProcAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
