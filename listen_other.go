//go:build !linux

package main

import "net"

// listen opens one listening socket on addr (see listen_linux.go for why
// Linux has several).
func listen(addr string) ([]net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return []net.Listener{ln}, nil
}
