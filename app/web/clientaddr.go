package web

import (
	"net"
	"net/http"
	"strings"
)

// clientKey names the client of r for per-address limits: its IPv4
// address, or the /64 prefix of its IPv6 address (one host or household
// commonly holds a whole /64, and picks addresses in it at will).
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	mask := net.CIDRMask(64, 128)
	return (&net.IPNet{IP: ip.Mask(mask), Mask: mask}).String()
}

// TrustClientHeader returns next behind a reverse proxy that names the
// client's address in header (X-Real-IP, X-Forwarded-For, ...): a request
// that carries it gets that address as its RemoteAddr, so that per-address
// limits see the client rather than the proxy. In a list, the last address
// counts: the one the proxy itself added (what comes before it, the client
// may have sent). Use it only when every request passes through that proxy:
// anyone who reaches the node directly can set the header.
func TrustClientHeader(header string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Values(header); len(v) > 0 {
			last := v[len(v)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if ip := net.ParseIP(strings.TrimSpace(last)); ip != nil {
				r.RemoteAddr = net.JoinHostPort(ip.String(), "0")
			}
		}
		next.ServeHTTP(w, r)
	})
}
