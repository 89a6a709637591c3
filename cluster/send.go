package cluster

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"time"
)

// fromKey marks the context of a forwarded request whose headers checked
// out with the name of the node that sent it.
type fromKey struct{}

// ForwardedFrom returns the node that forwarded r, signed with the
// cluster secret ("" for a request straight from a client). Only a node
// can send a request it is the only one to be served: a change applied
// again (Node.Send).
func ForwardedFrom(r *http.Request) string {
	from, _ := r.Context().Value(fromKey{}).(string)
	return from
}

// ErrNoPrimary means no other node is known to be the primary.
var ErrNoPrimary = errors.New("no other node is known to be the primary")

// Send posts body, JSON, to path on the primary, as this node's own
// request, signed as a forwarded write is (without a client's cookie),
// and returns the answer's status and body. The primary serves it only
// while it is the primary, and answers 503 with HeaderMoved when it is
// not. It fails with ErrNoPrimary while no other node is known to be the
// primary.
func (n *Node) Send(ctx context.Context, path string, body []byte) (int, []byte, error) {
	p, ok := n.primary()
	if !ok || p.Name == n.Name || p.HTTP == "" || n.fwd == nil {
		return 0, nil, ErrNoPrimary
	}
	return n.fwd.send(ctx, p.HTTP+path, body)
}

// send posts body to url, signed as a forwarded write from this node.
func (f *Forwarder) send(ctx context.Context, url string, body []byte) (int, []byte, error) {
	timeout := f.Timeout
	if timeout == 0 {
		timeout = DefaultForwardTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	const client = "127.0.0.1" // the node itself
	deadline := strconv.FormatInt(time.Now().Add(timeout).UnixMilli(), 10)
	nonce := newNonce()
	req.Header.Set(HeaderClient, client)
	req.Header.Set(HeaderDeadline, deadline)
	req.Header.Set(HeaderFrom, f.Node)
	req.Header.Set(HeaderNonce, nonce)
	req.Header.Set(HeaderSignature, f.sign(signedOf(req, body, client, deadline, f.Node, nonce)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, MaxForwardBody))
	return resp.StatusCode, answer, err
}
