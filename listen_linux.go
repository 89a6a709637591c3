package main

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// acceptQueues is how many listening sockets share the HTTP port.
const acceptQueues = 8

// listen opens acceptQueues listening sockets on addr that share its port
// (SO_REUSEPORT): the kernel spreads new connections over them, and each
// has an accept queue of its own (net.core.somaxconn, 4,096 here). When a
// node restarts, thousands of tabs reconnect within a second or two; one
// full queue dropped their SYNs, and each dropped tab came back only on a
// SYN retransmit 1, 3 or 7 s later.
//
// The port is first bound alone, so that a port another process holds is
// refused as with a plain listen, instead of being shared with it.
func listen(addr string) ([]net.Listener, error) {
	probe, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	port := probe.Addr().(*net.TCPAddr).Port
	probe.Close()
	shared := net.JoinHostPort(host, strconv.Itoa(port))
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	var lns []net.Listener
	for range acceptQueues {
		ln, err := lc.Listen(context.Background(), "tcp", shared)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return nil, fmt.Errorf("listen on %s with SO_REUSEPORT: %w", shared, err)
		}
		lns = append(lns, ln)
	}
	return lns, nil
}
