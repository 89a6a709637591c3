package local

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"notesync/internal/mountinfo"
)

// clearStaleMount unmounts what an earlier run left mounted at dir, but
// never a mount that a live process uses (docs/PROTOCOL.md §2): then it
// waits up to wait, since a launcher that was just killed leaves its LiteFS
// shutting down, and fails naming the processes.
func clearStaleMount(dir string, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for mountinfo.IsMountPoint(dir) {
		users := mountUsers(dir)
		if len(users) == 0 {
			if out, err := exec.Command("fusermount3", "-u", "-z", dir).CombinedOutput(); err != nil {
				return fmt.Errorf("unmount the stale mount %s: %v: %s", dir, err, bytes.TrimSpace(out))
			}
			return nil
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("%s is still mounted and in use by %s, left from an earlier run: stop it (kill %s), then start again",
				dir, describeProcs(users), joinInts(users, " "))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}

// mountUsers lists the live processes that use the mount at dir: those
// with a file, working directory or root under it, and the LiteFS serving
// it with its app, whose environment names it as LITEFS_DIR.
func mountUsers(dir string) []int {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil
	}
	under := func(p string) bool { return p == abs || strings.HasPrefix(p, abs+"/") }
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if procUses(pid, abs, under) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func procUses(pid int, dir string, under func(string) bool) bool {
	base := "/proc/" + strconv.Itoa(pid)
	if env, err := os.ReadFile(base + "/environ"); err == nil {
		if slices.Contains(strings.Split(string(env), "\x00"), "LITEFS_DIR="+dir) {
			return true
		}
	}
	for _, link := range []string{"cwd", "root"} {
		if p, err := os.Readlink(base + "/" + link); err == nil && under(p) {
			return true
		}
	}
	fds, _ := os.ReadDir(base + "/fd")
	for _, fd := range fds {
		if p, err := os.Readlink(base + "/fd/" + fd.Name()); err == nil && under(p) {
			return true
		}
	}
	return false
}

// describeProcs names processes as "pid 12 (litefs), pid 13 (notesync)".
func describeProcs(pids []int) string {
	var parts []string
	for _, pid := range pids {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
		parts = append(parts, fmt.Sprintf("pid %d (%s)", pid, strings.TrimSpace(string(comm))))
	}
	return strings.Join(parts, ", ")
}

func joinInts(ns []int, sep string) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, sep)
}
