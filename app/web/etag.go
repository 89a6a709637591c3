package web

import (
	"strconv"
	"strings"

	"notesync/app"
)

// etag is the entity tag of a note at revision rev: "<rev>", a strong tag
// (docs/PROTOCOL.md §6).
func etag(rev int64) string { return `"` + strconv.FormatInt(rev, 10) + `"` }

// maxIfMatchTags bounds the entity tags one If-Match may list.
const maxIfMatchTags = 32

// parseIfMatch reads the If-Match header values of a request (RFC 9110
// §13.1.1) as the revisions a write may apply to. No header, or "*",
// allows any revision: the note must only exist. A weak tag (W/"3") never
// matches, as If-Match compares strongly, and neither does a quoted tag
// that is not a revision; both leave the write to fail as stale. A header
// that is not a list of quoted tags is EINVALID.
func parseIfMatch(values []string) (app.Revs, error) {
	if len(values) == 0 {
		return nil, nil
	}
	h := strings.TrimSpace(strings.Join(values, ","))
	if h == "*" {
		return nil, nil
	}
	revs := app.Revs{}
	tags := 0
	for h != "" {
		weak := strings.HasPrefix(h, "W/")
		if weak {
			h = h[2:]
		}
		if !strings.HasPrefix(h, `"`) {
			return nil, errIfMatch
		}
		end := strings.IndexByte(h[1:], '"')
		if end < 0 {
			return nil, errIfMatch
		}
		tag := h[1 : end+1]
		if !validETagChars(tag) {
			return nil, errIfMatch
		}
		if tags++; tags > maxIfMatchTags {
			return nil, app.Errorf(app.EINVALID, "If-Match lists more than %d entity tags", maxIfMatchTags)
		}
		if rev, err := strconv.ParseInt(tag, 10, 64); err == nil && rev > 0 && !weak && tag == strconv.FormatInt(rev, 10) {
			revs = append(revs, rev)
		}
		h = strings.TrimLeft(h[end+2:], " \t")
		if h == "" {
			break
		}
		if h[0] != ',' {
			return nil, errIfMatch
		}
		h = strings.TrimLeft(h[1:], " \t,")
		if h == "" {
			return nil, errIfMatch
		}
	}
	if len(revs) == 0 {
		// Only tags that can never match: no revision is allowed.
		return app.Revs{0}, nil
	}
	return revs, nil
}

var errIfMatch = app.Errorf(app.EINVALID, `If-Match must be "*" or entity tags such as "3" (the note's revision, in double quotes)`)

// validETagChars reports whether s holds only etagc characters: %x21,
// %x23-7E and obs-text.
func validETagChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c < 0x21 || c == 0x7f {
			return false
		}
	}
	return true
}
