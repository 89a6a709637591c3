package cluster

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Headers a replica adds to a request it forwards to the primary. They are
// signed with the cluster secret, together with the request's method, URI,
// body and Cookie header; a request carrying them unsigned or badly signed
// is refused, so clients cannot pose as a replica. The primary remembers
// each nonce until its deadline, so a captured forwarded request cannot be
// sent again, nor with another cookie or body.
const (
	HeaderClient    = "X-Notesync-Client"   // the client's address as the replica saw it
	HeaderDeadline  = "X-Notesync-Deadline" // unix ms by which the replica gives up
	HeaderFrom      = "X-Notesync-From"     // the forwarding node's name
	HeaderNonce     = "X-Notesync-Nonce"    // random, once per forwarded request
	HeaderSignature = "X-Notesync-Signature"
	// HeaderMoved marks the 503 of a node that was sent a forwarded write
	// but is no longer the primary: nothing was written, and the
	// forwarding replica tries the new primary.
	HeaderMoved = "X-Notesync-Moved"
)

// MaxForwardBody bounds the body of a forwarded request, which is read
// whole to be signed: well above any body the app takes.
const MaxForwardBody = 1 << 20

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
	// NodeLocal, if set, names writes that change only this node's own
	// state (nothing in the database), which are never forwarded.
	NodeLocal func(*http.Request) bool
	// Timeout bounds a forwarded request (DefaultForwardTimeout).
	Timeout time.Duration
	Logger  *slog.Logger

	proxy  *httputil.ReverseProxy
	nonces nonceLog
	gate   *writeGate // nil: writes are never held
}

// signed is what a forwarding signature covers.
type signed struct {
	method, uri, client, deadline, from, nonce string
	body                                       [sha256.Size]byte // of the body
	cookie                                     [sha256.Size]byte // of the Cookie header(s)
}

// signedOf returns what the signature of a request covers, given its body
// and the values of the forwarding headers.
func signedOf(r *http.Request, body []byte, client, deadline, from, nonce string) signed {
	return signed{
		method: r.Method, uri: r.URL.RequestURI(), client: client, deadline: deadline, from: from, nonce: nonce,
		body:   sha256.Sum256(body),
		cookie: sha256.Sum256([]byte(strings.Join(r.Header.Values("Cookie"), "\n"))),
	}
}

// sign returns the signature of a forwarded request.
func (f *Forwarder) sign(s signed) string {
	mac := hmac.New(sha256.New, append([]byte("notesync forward\x00"), f.Secret...))
	for _, v := range []string{s.method, s.uri, s.client, s.deadline, s.from, s.nonce, string(s.body[:]), string(s.cookie[:])} {
		mac.Write([]byte(v))
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
			fw := pr.In.Context().Value(forwardKey{}).(*forwarding)
			target, _ := url.Parse(fw.target)
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host // same-origin checks on the primary see the client's host
			client := clientIP(pr.In.RemoteAddr)
			deadline := strconv.FormatInt(fw.deadline.UnixMilli(), 10)
			nonce := newNonce()
			pr.Out.Header.Set(HeaderClient, client)
			pr.Out.Header.Set(HeaderDeadline, deadline)
			pr.Out.Header.Set(HeaderFrom, f.Node)
			pr.Out.Header.Set(HeaderNonce, nonce)
			pr.Out.Header.Set(HeaderSignature, f.sign(signedOf(pr.In, fw.body, client, deadline, f.Node, nonce)))
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
		ModifyResponse: func(resp *http.Response) error {
			if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get(HeaderMoved) != "" {
				return errMoved
			}
			return nil
		},
		ErrorHandler: f.proxyError,
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(HeaderSignature) != "" || r.Header.Get(HeaderFrom) != "" {
			f.serveForwarded(w, r, next)
			return
		}
		if !isWrite(r) || (f.NodeLocal != nil && f.NodeLocal(r)) {
			next.ServeHTTP(w, r)
			return
		}
		served, _, err := f.gate.enter(r.Context(), f.IsPrimary)
		if err != nil {
			return // the client went away while the lease was handed off
		}
		if served {
			defer f.gate.leave()
			next.ServeHTTP(w, r)
			return
		}
		if f.FlyReplay != nil {
			if v := awaitPrimary(r.Context(), time.Now().Add(primaryWait), "", f.FlyReplay); v != "" {
				w.Header().Set("fly-replay", v)
				w.WriteHeader(http.StatusConflict)
				return
			}
			writeError(w, http.StatusServiceUnavailable, 1, "no primary is reachable; nothing was written")
			return
		}
		f.forward(w, r)
	})
}

// serveForwarded serves a request a replica forwarded here, once its
// headers check out.
func (f *Forwarder) serveForwarded(w http.ResponseWriter, r *http.Request, next http.Handler) {
	r2, deadline, err := f.verify(w, r)
	if err != nil {
		var be *bodyError
		if errors.As(err, &be) {
			writeBodyError(w, be)
			return
		}
		writeError(w, http.StatusForbidden, 0, err.Error())
		return
	}
	// The replica stops waiting at the deadline, so work that has not
	// answered by then is cut short. Once the response has begun (a
	// streamed answer), the replica is relaying it, and it runs until the
	// client goes away.
	ctx, cancel := context.WithCancel(r2.Context())
	defer cancel()
	timer := time.AfterFunc(time.Until(deadline), cancel)
	defer timer.Stop()
	r2 = r2.WithContext(ctx)
	if !isWrite(r) {
		next.ServeHTTP(&headerWatch{ResponseWriter: w, started: func() { timer.Stop() }}, r2)
		return
	}
	served, waited, err := f.gate.enter(ctx, f.IsPrimary)
	switch {
	case served:
		defer f.gate.leave()
		hw := &headerWatch{ResponseWriter: w, started: func() { timer.Stop() }}
		next.ServeHTTP(hw, r2)
		if !hw.once && ctx.Err() != nil && r.Context().Err() == nil {
			// The deadline cut the write short and it said nothing: it
			// may have committed (it was waiting for another node to
			// hold it, say). Relayed as it is, nothing would be a 200.
			writeError(w, http.StatusGatewayTimeout, 1, "the write did not finish in time; it may or may not have happened: retry with the same Idempotency-Key")
		}
	case waited && err == nil:
		// It waited here while this node handed the lease off: it goes on
		// to the new primary, once (a node that did not hold it refuses it
		// below).
		timer.Stop()
		f.forward(w, r2)
	default:
		// Forwarded to a node that is no longer primary: never forward
		// twice; the replica tries the new primary, or the client retries
		// with its Idempotency-Key.
		w.Header().Set(HeaderMoved, "1")
		writeError(w, http.StatusServiceUnavailable, 1, "the primary moved; retry")
	}
}

// primaryWait bounds how long a forwarded write waits for a primary to be
// known (an election, or a handoff that LiteFS has not told this node of
// yet), within the forward's Timeout: what is left is for the primary to
// answer.
const primaryWait = 3 * time.Second

// forward sends a write to the primary (on Fly.io, Wrap replays it there
// instead, after the same wait for a known primary). While no primary is known, or the
// one known refuses the connection (it stopped after handing the lease
// off), it waits up to primaryWait for one, then answers 503.
func (f *Forwarder) forward(w http.ResponseWriter, r *http.Request) {
	body, berr := readBody(w, r)
	if berr != nil {
		writeBodyError(w, berr)
		return
	}
	start := time.Now()
	// The answer must begin by the deadline; once it has, it is relayed
	// for as long as it runs (a streamed answer).
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	timer := time.AfterFunc(f.Timeout, cancel)
	defer timer.Stop()
	w = &headerWatch{ResponseWriter: w, started: func() { timer.Stop() }}
	refused := ""
	for {
		target := awaitPrimary(ctx, start.Add(primaryWait), refused, f.PrimaryURL)
		if target == "" {
			writeError(w, http.StatusServiceUnavailable, 1, "no primary is reachable; nothing was written")
			return
		}
		fw := &forwarding{target: target, body: body, deadline: start.Add(f.Timeout), retry: start.Add(primaryWait)}
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.proxy.ServeHTTP(w, r.WithContext(context.WithValue(ctx, forwardKey{}, fw)))
		if !fw.refused {
			return
		}
		refused = target
	}
}

// awaitPrimary returns where the primary is (primary's answer: a URL, or
// a fly-replay value), once it is known and is not refused, or "" if none
// is by until.
func awaitPrimary(ctx context.Context, until time.Time, refused string, primary func() string) string {
	for {
		if target := primary(); target != "" && target != refused {
			return target
		}
		if time.Now().After(until) || pause(ctx, 25*time.Millisecond) != nil {
			return ""
		}
	}
}

// forwarding is what Rewrite needs of a request being forwarded.
type forwarding struct {
	target   string
	body     []byte
	deadline time.Time // the replica gives up then
	retry    time.Time // a refused connection is tried again until then
	refused  bool      // the target refused the connection: nothing was sent
}

type forwardKey struct{}

// readBody reads a request's body whole (at most MaxForwardBody), so that
// it can be signed or checked, and puts it back for the handler or proxy.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, *bodyError) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxForwardBody))
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return nil, &bodyError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is over %d bytes", MaxForwardBody)}
		case errors.Is(err, os.ErrDeadlineExceeded):
			return nil, &bodyError{http.StatusRequestTimeout, "the request body did not arrive in time; send it again"}
		default:
			return nil, &bodyError{http.StatusBadRequest, "unreadable request body"}
		}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return body, nil
}

// bodyError is a body that could not be read, with its answer.
type bodyError struct {
	status int
	msg    string
}

func (e *bodyError) Error() string { return e.msg }

func writeBodyError(w http.ResponseWriter, e *bodyError) {
	if e.status == http.StatusRequestTimeout {
		w.Header().Set("Connection", "close")
	}
	writeError(w, e.status, 0, e.msg)
}

func newNonce() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}

// nonceLog remembers the nonces of forwarded requests until their
// deadlines, after which a request is refused anyway.
type nonceLog struct {
	mu     sync.Mutex
	seen   map[string]int64 // nonce → deadline, unix ms
	pruned int64
}

// first records nonce until deadline and reports whether it is new.
func (l *nonceLog) first(nonce string, deadline int64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now().UnixMilli()
	if l.seen == nil {
		l.seen = map[string]int64{}
	}
	if now-l.pruned > 1000 {
		l.pruned = now
		for n, d := range l.seen {
			if d < now {
				delete(l.seen, n)
			}
		}
	}
	if _, ok := l.seen[nonce]; ok {
		return false
	}
	l.seen[nonce] = deadline
	return true
}

// errMoved is the answer of a node that is no longer the primary.
var errMoved = errors.New("the primary moved")

// proxyError answers a failed forward: 503 when the request never reached
// the primary (it has not happened), 504 when it was sent and its outcome
// is unknown (retry with the same Idempotency-Key).
func (f *Forwarder) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	// Refused, or answered by a node that is no longer primary: nothing was
	// written, and until fw.retry forward tries the next primary.
	var op *net.OpError
	if (errors.As(err, &op) && op.Op == "dial") || errors.Is(err, errMoved) {
		if fw, ok := r.Context().Value(forwardKey{}).(*forwarding); ok && time.Now().Before(fw.retry) {
			fw.refused = true
			return
		}
		f.Logger.Warn("forward to primary: not reachable", "err", err)
		writeError(w, http.StatusServiceUnavailable, 1, "no primary is reachable; nothing was written")
		return
	}
	f.Logger.Warn("forward to primary: no answer", "err", err)
	writeError(w, http.StatusGatewayTimeout, 1, "the primary did not answer; the write may or may not have happened: retry with the same Idempotency-Key")
}

// verify checks a forwarded request's signature, deadline and nonce, and
// returns it with the client's address as RemoteAddr.
func (f *Forwarder) verify(w http.ResponseWriter, r *http.Request) (*http.Request, time.Time, error) {
	body, berr := readBody(w, r)
	if berr != nil {
		return nil, time.Time{}, berr
	}
	client, deadline, from, nonce := r.Header.Get(HeaderClient), r.Header.Get(HeaderDeadline), r.Header.Get(HeaderFrom), r.Header.Get(HeaderNonce)
	want := f.sign(signedOf(r, body, client, deadline, from, nonce))
	if len(f.Secret) == 0 || nonce == "" || !hmac.Equal([]byte(want), []byte(r.Header.Get(HeaderSignature))) {
		return nil, time.Time{}, errors.New("forged or damaged forwarding headers")
	}
	ms, err := strconv.ParseInt(deadline, 10, 64)
	if err != nil || time.Now().UnixMilli() > ms {
		return nil, time.Time{}, errors.New("forwarded request past its deadline")
	}
	if !f.nonces.first(nonce, ms) {
		return nil, time.Time{}, errors.New("forwarded request already received")
	}
	r2 := r.Clone(context.WithValue(r.Context(), fromKey{}, from))
	r2.RemoteAddr = net.JoinHostPort(client, "0")
	for _, h := range []string{HeaderClient, HeaderDeadline, HeaderFrom, HeaderNonce, HeaderSignature} {
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
