//go:build !linux

package realtime

import "net"

// tryWriter is Linux-only; elsewhere every batch goes the blocking way.
type tryWriter struct{}

func newTryWriter(net.Conn) *tryWriter { return nil }

func (t *tryWriter) write(net.Buffers) (int, error) { return 0, nil }
