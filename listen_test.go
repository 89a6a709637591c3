package main

import (
	"net"
	"testing"
)

// TestListen checks the HTTP listening sockets: they share one port, take
// connections, and a second node on the same address is refused as with a
// plain listen rather than sharing the port.
func TestListen(t *testing.T) {
	lns, err := listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	addr := lns[0].Addr().String()
	for _, l := range lns {
		if l.Addr().String() != addr {
			t.Fatalf("listeners on %s and %s", addr, l.Addr())
		}
	}
	if more, err := listen(addr); err == nil {
		for _, l := range more {
			l.Close()
		}
		t.Fatalf("a second node could listen on %s too", addr)
	}
	accepted := make(chan struct{}, 1)
	for _, l := range lns {
		go func() {
			if c, err := l.Accept(); err == nil {
				c.Close()
				accepted <- struct{}{}
			}
		}()
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	<-accepted
}
