package realtime

import (
	"errors"
	"net/http"
	"net/url"
	"path"
	"strings"
)

// errCrossOrigin is the refusal of a request from another site's page.
var errCrossOrigin = errors.New("cross-origin request refused")

// checkOrigin refuses, before anything is upgraded or streamed, a /ws or
// /events request that a page of another origin made: its Origin names
// another host (unless it matches Endpoint.OriginPatterns), or, with no
// Origin (an EventSource or a plain GET from the same origin sends none),
// its Sec-Fetch-Site says "cross-site" or "same-site". A request without
// either header comes from no browser and passes; authentication decides.
//
// A page on this very host whose Origin is plain http while the request
// came over https (directly, or through a TLS-terminating proxy that says
// so in X-Forwarded-Proto) is refused too: a page served over http, which
// anyone on the network can rewrite, would otherwise pass as same-origin.
// An https page reaching a plain-http listener is a TLS-terminating proxy
// that does not say so, and is let through.
func (e *Endpoint) checkOrigin(r *http.Request) error {
	origin := r.Header.Get("Origin")
	if origin == "" {
		switch r.Header.Get("Sec-Fetch-Site") {
		case "cross-site", "same-site":
			return errCrossOrigin
		}
		return nil
	}
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return errCrossOrigin
	}
	if !strings.EqualFold(u.Host, r.Host) {
		if e.originAllowed(u) {
			return nil
		}
		return errCrossOrigin
	}
	overTLS := r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
	switch {
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && !overTLS:
		return nil
	}
	return errors.New("cross-origin request refused: the page's origin " + u.Scheme + "://" + u.Host + " does not match this site's scheme")
}

// originAllowed reports whether u matches one of OriginPatterns, read as
// websocket.AcceptOptions reads them: a path.Match pattern of the host, or
// of scheme://host when the pattern has a scheme.
func (e *Endpoint) originAllowed(u *url.URL) bool {
	for _, p := range e.OriginPatterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}
