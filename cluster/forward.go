package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Headers a replica adds to a request it forwards to the primary. They are
// signed with the cluster secret; a request carrying them unsigned or badly
// signed is refused, so clients cannot pose as a replica.
const (
	HeaderClient    = "X-Notesync-Client"   // the client's address as the replica saw it
	HeaderDeadline  = "X-Notesync-Deadline" // unix ms by which the replica gives up
	HeaderFrom      = "X-Notesync-From"     // the forwarding node's name
	HeaderSignature = "X-Notesync-Signature"
)

// DefaultForwardTimeout bounds a forwarded write: docs/PROTOCOL.md §3 wants an answer
// within 5 s while no primary is reachable.
const DefaultForwardTimeout = 4500 * time.Millisecond

// Forwarder sends writes that reach a replica to the primary, and checks the
// forwarding headers of requests that arrive from replicas.
type Forwarder struct {
	// Secret signs forwarding headers; every node of the cluster has it.
	Secret []byte
	// Node is this node's name.
	Node string
	// IsPrimary reports whether this node takes writes now. It is asked on
	// every request: under a Consul lease the role changes while running.
	IsPrimary func() bool
	// PrimaryURL returns the primary's HTTP base URL, or "" when unknown.
	PrimaryURL func() string
	// FlyReplay, if set, is used instead of proxying (on Fly.io): it
	// returns the value of the fly-replay header ("instance=<machine id>"),
	// or "" when the primary is unknown.
	FlyReplay func() string
	// ServeHere, if set, names writes that change only this node's own
	// state (nothing in the database), which are never forwarded.
	ServeHere func(*http.Request) bool
	// Timeout bounds a forwarded request (DefaultForwardTimeout).
	Timeout time.Duration
	Logger  *slog.Logger

	proxy *httputil.ReverseProxy
}

// sign returns the signature of a forwarded request's identity.
func (f *Forwarder) sign(method, uri, client, deadline, from string) string {
	mac := hmac.New(sha256.New, append([]byte("notesync forward\x00"), f.Secret...))
	for _, s := range []string{method, uri, client, deadline, from} {
		mac.Write([]byte(s))
		mac.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// Wrap returns next behind forwarding: it authenticates the headers of
// forwarded requests (refusing forged ones with 403), lets reads and any
// request on the primary through, and forwards other writes to the primary.
func (f *Forwarder) Wrap(next http.Handler) http.Handler {
	if f.Timeout == 0 {
		f.Timeout = DefaultForwardTimeout
	}
	if f.Logger == nil {
		f.Logger = slog.Default()
	}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			target, _ := url.Parse(pr.In.Context().Value(targetKey{}).(string))
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // same-origin checks on the primary see the client's host
			client := clientIP(pr.In.RemoteAddr)
			deadline := strconv.FormatInt(time.Now().Add(f.Timeout).UnixMilli(), 10)
			uri := pr.In.URL.RequestURI()
			pr.Out.Header.Set(HeaderClient, client)
			pr.Out.Header.Set(HeaderDeadline, deadline)
			pr.Out.Header.Set(HeaderFrom, f.Node)
			pr.Out.Header.Set(HeaderSignature, f.sign(pr.In.Method, uri, client, deadline, f.Node))
		},
		// A fresh connection per forwarded write: a write sent over a
		// pooled connection to a primary that just died fails in a way that
		// cannot tell "never arrived" (503) from "outcome unknown" (504).
		// With a dial per request, a dead primary is a refused dial: 503.
		Transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			ResponseHeaderTimeout: f.Timeout,
			DisableKeepAlives:     true,
		},
		ErrorHandler: f.proxyError,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(HeaderSignature) != "" || r.Header.Get(HeaderFrom) != "" {
			r2, deadline, err := f.verify(r)
			if err != nil {
				writeError(w, http.StatusForbidden, 0, err.Error())
				return
			}
			if !isWrite(r) || f.IsPrimary() {
				// The replica stops waiting at the deadline, so work that has
				// not answered by then is cut short. Once the response has
				// begun (a streamed answer), the replica is relaying it, and
				// it runs until the client goes away.
				ctx, cancel := context.WithCancel(r2.Context())
				defer cancel()
				timer := time.AfterFunc(time.Until(deadline), cancel)
				defer timer.Stop()
				next.ServeHTTP(&headerWatch{ResponseWriter: w, started: func() { timer.Stop() }}, r2.WithContext(ctx))
				return
			}
			// Forwarded to a node that is no longer primary: never forward
			// twice; the client retries with its Idempotency-Key.
			writeError(w, http.StatusServiceUnavailable, 1, "the primary moved; retry")
			return
		}
		if !isWrite(r) || f.IsPrimary() || (f.ServeHere != nil && f.ServeHere(r)) {
			next.ServeHTTP(w, r)
			return
		}
		if f.FlyReplay != nil {
			if v := f.FlyReplay(); v != "" {
				w.Header().Set("fly-replay", v)
				w.WriteHeader(http.StatusConflict)
				return
			}
			writeError(w, http.StatusServiceUnavailable, 1, "no primary is reachable; nothing was written")
			return
		}
		target := f.PrimaryURL()
		if target == "" {
			writeError(w, http.StatusServiceUnavailable, 1, "no primary is reachable; nothing was written")
			return
		}
		ctx := context.WithValue(r.Context(), targetKey{}, target)
		f.proxy.ServeHTTP(w, r.WithContext(ctx))
	})
}

type targetKey struct{}

// proxyError answers a failed forward: 503 when the request never reached
// the primary (it has not happened), 504 when it was sent and its outcome
// is unknown (retry with the same Idempotency-Key).
func (f *Forwarder) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		f.Logger.Warn("forward to primary: not reachable", "err", err)
		writeError(w, http.StatusServiceUnavailable, 1, "no primary is reachable; nothing was written")
		return
	}
	f.Logger.Warn("forward to primary: no answer", "err", err)
	writeError(w, http.StatusGatewayTimeout, 1, "the primary did not answer; the write may or may not have happened: retry with the same Idempotency-Key")
}

// verify checks a forwarded request's signature and deadline and returns it
// with the client's address as RemoteAddr.
func (f *Forwarder) verify(r *http.Request) (*http.Request, time.Time, error) {
	client, deadline, from := r.Header.Get(HeaderClient), r.Header.Get(HeaderDeadline), r.Header.Get(HeaderFrom)
	want := f.sign(r.Method, r.URL.RequestURI(), client, deadline, from)
	if len(f.Secret) == 0 || !hmac.Equal([]byte(want), []byte(r.Header.Get(HeaderSignature))) {
		return nil, time.Time{}, errors.New("forged or damaged forwarding headers")
	}
	ms, err := strconv.ParseInt(deadline, 10, 64)
	if err != nil || time.Now().UnixMilli() > ms {
		return nil, time.Time{}, errors.New("forwarded request past its deadline")
	}
	r2 := r.Clone(r.Context())
	r2.RemoteAddr = net.JoinHostPort(client, "0")
	for _, h := range []string{HeaderClient, HeaderDeadline, HeaderFrom, HeaderSignature} {
		r2.Header.Del(h)
	}
	return r2, time.UnixMilli(ms), nil
}

// isWrite reports whether r changes state (and so must run on the primary).
func isWrite(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return false
	}
	return true
}

func clientIP(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return strings.TrimSpace(remote)
	}
	return host
}

func writeError(w http.ResponseWriter, status, retryAfter int, msg string) {
	if retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// headerWatch calls started when the response's header is written.
type headerWatch struct {
	http.ResponseWriter
	started func()
	once    bool
}

func (h *headerWatch) WriteHeader(code int) {
	if !h.once {
		h.once = true
		h.started()
	}
	h.ResponseWriter.WriteHeader(code)
}

func (h *headerWatch) Write(p []byte) (int, error) {
	if !h.once {
		h.WriteHeader(http.StatusOK)
	}
	return h.ResponseWriter.Write(p)
}

func (h *headerWatch) Flush() {
	if f, ok := h.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (h *headerWatch) Unwrap() http.ResponseWriter { return h.ResponseWriter }
