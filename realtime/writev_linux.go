package realtime

import (
	"net"
	"os"
	"syscall"
	"unsafe"
)

// tryWriter makes one writev(2) of a batch without waiting: most batches
// fit in the socket's buffer, and then no write deadline (a runtime timer
// to set and clear) is needed at all.
type tryWriter struct {
	raw   syscall.RawConn
	fn    func(uintptr) bool // try, bound once
	iov   []syscall.Iovec
	n     int
	errno syscall.Errno
}

// maxTryIovecs keeps a try under the kernel's IOV_MAX (1024).
const maxTryIovecs = 256

func newTryWriter(c net.Conn) *tryWriter {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	t := &tryWriter{raw: raw}
	t.fn = t.try
	return t
}

func (t *tryWriter) try(fd uintptr) bool {
	r, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&t.iov[0])), uintptr(len(t.iov)))
	t.n, t.errno = int(r), e
	return true // never wait here: what is left goes the blocking way
}

// write writes what it can of bufs at once and reports how many bytes.
func (t *tryWriter) write(bufs net.Buffers) (int, error) {
	if t == nil || len(bufs) > maxTryIovecs {
		return 0, nil
	}
	t.iov = t.iov[:0]
	for _, b := range bufs {
		if len(b) > 0 {
			t.iov = append(t.iov, syscall.Iovec{Base: &b[0], Len: uint64(len(b))})
		}
	}
	if len(t.iov) == 0 {
		return 0, nil
	}
	err := t.raw.Write(t.fn)
	clear(t.iov) // drop the references to the frames
	if err != nil {
		return 0, err
	}
	switch t.errno {
	case 0:
		return t.n, nil
	case syscall.EAGAIN:
		return 0, nil
	default:
		return 0, os.NewSyscallError("writev", t.errno)
	}
}
