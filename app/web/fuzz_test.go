package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"unicode/utf8"

	"notesync/app"
)

// FuzzReadNoteWrite feeds arbitrary bodies and content types to the note
// input parser: it must never panic, and whatever it accepts is a valid note
// body.
func FuzzReadNoteWrite(f *testing.F) {
	seeds := []struct{ ct, body string }{
		{"application/json", `{"body":"hello"}`},
		{"application/json", `{"body":""}`},
		{"application/json", `{"body":"a\u0000b"}`},
		{"application/json", "{\"body\":\"\xff\"}"},
		{"application/json", `{"body":"\ud800"}`},
		{"application/json", `{"body":"x"} trailing`},
		{"application/json; charset=utf-8", `{"body":"<script>alert(1)</script>"}`},
		{"application/x-www-form-urlencoded", "body=hi%20there"},
		{"application/x-www-form-urlencoded", "body=%ff"},
		{"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"body\"\r\n\r\nhi\r\n--x--\r\n"},
		{"text/plain", "body"},
		{"", ""},
		{"application/json", `{"body":"` + strings.Repeat("é", 10001) + `"}`},
		{"application/json", `{"body":" \n\t "}`},
		{"application/x-www-form-urlencoded", "body=%20%0D%0A"},
	}
	for _, s := range seeds {
		f.Add(s.ct, s.body)
	}
	f.Fuzz(func(t *testing.T, ct, body string) {
		req := httptest.NewRequest(http.MethodPost, "/api/notes", strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		got, _, err := readNoteWrite(httptest.NewRecorder(), req)
		if err != nil {
			if s := ErrorStatus(err); s < 400 || s >= 500 {
				t.Fatalf("input error mapped to %d: %v", s, err)
			}
			return
		}
		if !utf8.ValidString(got) || strings.TrimSpace(got) == "" || utf8.RuneCountInString(got) > app.MaxNoteChars {
			t.Fatalf("accepted an invalid body %q", got)
		}
	})
}

// FuzzParseIfMatch: any header either parses or is EINVALID, never panics;
// what it allows round-trips through etag; and a revision written by etag
// is always allowed.
func FuzzParseIfMatch(f *testing.F) {
	for _, s := range []string{`"1"`, `*`, `W/"2"`, `"1", "2"`, `"a"`, `1`, `"1`, `"1" "2"`, `"1",`, ``, `,`, `"0"`, `"-1"`, `"01"`, "\"\x7f\"", `W/`, `"9223372036854775808"`} {
		f.Add(s, int64(3))
	}
	f.Fuzz(func(t *testing.T, h string, rev int64) {
		revs, err := parseIfMatch([]string{h})
		if err != nil {
			if app.ErrorCode(err) != app.EINVALID {
				t.Fatalf("%q: error %v is not EINVALID", h, err)
			}
			return
		}
		if len(revs) > 0 {
			var tags []string
			for _, r := range revs {
				if r < 0 {
					t.Fatalf("%q: negative revision %d", h, r)
				}
				tags = append(tags, etag(r))
			}
			again, err := parseIfMatch([]string{strings.Join(tags, ", ")})
			if err != nil || !slices.Equal(again, revs) && !(len(revs) == 1 && revs[0] == 0) {
				t.Fatalf("%q: %v does not round-trip: %v %v", h, revs, again, err)
			}
		}
		if rev > 0 {
			got, err := parseIfMatch([]string{h + ", " + etag(rev)})
			if err == nil && !got.Allows(rev) {
				t.Fatalf("%q + %s: revision %d not allowed (%v)", h, etag(rev), rev, got)
			}
		}
	})
}

// authSeeds are bodies of the log-in and sign-up forms: ordinary ones,
// and what careless and hostile clients send.
var authSeeds = []struct{ ct, body string }{
	{"application/x-www-form-urlencoded", "username=alice&password=password1"},
	{"application/x-www-form-urlencoded", "username=+ALICE+&password=password1"},
	{"application/x-www-form-urlencoded", "username=alice&password=wrong-password"},
	{"application/x-www-form-urlencoded", "username=bob&password=" + strings.Repeat("p", 72) + "tail"},
	{"application/x-www-form-urlencoded", "username=carol&password=" + strings.Repeat("p", 257)},
	{"application/x-www-form-urlencoded", "username=dave&password=%00%00%00%00%00%00%00%00"},
	{"application/x-www-form-urlencoded", "username=%C3%A9mile&password=password1"},
	{"application/x-www-form-urlencoded", "username=erin&password=%FF%FE%FD%FC%FB%FA%F9%F8"},
	{"application/x-www-form-urlencoded", "username=frank&username=gina&password=password1&password=other"},
	{"application/x-www-form-urlencoded", "username=%zz&password=%"},
	{"application/x-www-form-urlencoded", "username=" + strings.Repeat("a", 20<<10)},
	{"application/x-www-form-urlencoded", ""},
	{"multipart/form-data; boundary=x", "--x\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\nhank\r\n--x\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\npassword1\r\n--x--\r\n"},
	{"multipart/form-data; boundary=x", "--x\r\nbroken"},
	{"application/json", `{"username":"alice","password":"password1"}`},
	{"", "username=alice&password=password1"},
}

// authFuzzer posts form bodies to path from a new client address each
// time (so that the per-address limits let most through), and checks what
// every answer must be: a page with the form, never a 5xx.
type authFuzzer struct {
	ts   *testServer
	n    atomic.Int64
	path string
}

func newAuthFuzzer(f *testing.F, path string) *authFuzzer {
	ts := newTestServer(f)
	if _, err := ts.store.CreateUser(context.Background(), "alice", "password1"); err != nil {
		f.Fatal(err)
	}
	for _, s := range authSeeds {
		f.Add(s.ct, s.body)
	}
	return &authFuzzer{ts: ts, path: path}
}

// post sends body and returns the answer, and the form as the server reads
// it.
func (a *authFuzzer) post(t *testing.T, ct, body string) (*httptest.ResponseRecorder, string, string) {
	newReq := func() *http.Request {
		req := httptest.NewRequest(http.MethodPost, a.path, strings.NewReader(body))
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		n := a.n.Add(1)
		req.RemoteAddr = fmt.Sprintf("10.%d.%d.%d:1234", n>>16&255, n>>8&255, n&255)
		return req
	}
	rec := httptest.NewRecorder()
	a.ts.srv.ServeHTTP(rec, newReq())
	if rec.Code >= 500 {
		t.Fatalf("%s %q (%s): %d %s", a.path, body, ct, rec.Code, rec.Body)
	}
	if rec.Code != http.StatusSeeOther && (!strings.Contains(rec.Body.String(), "<form") || !strings.Contains(rec.Body.String(), `id="form-error"`)) {
		t.Fatalf("%s %q: %d without the form and its reason: %s", a.path, body, rec.Code, rec.Body)
	}
	parsed := newReq()
	_ = parseForm(parsed, 16<<10)
	return rec, app.NormalizeUsername(parsed.PostForm.Get("username")), parsed.PostForm.Get("password")
}

// FuzzLoginForm: a log-in answers 303 only for the right name and
// password, and otherwise one of 400, 401, 413, 429 with the form.
func FuzzLoginForm(f *testing.F) {
	a := newAuthFuzzer(f, "/login")
	f.Fuzz(func(t *testing.T, ct, body string) {
		rec, user, pass := a.post(t, ct, body)
		switch rec.Code {
		case http.StatusSeeOther:
			if user != "alice" || pass != "password1" {
				t.Fatalf("%q logged in as %q with %q", body, user, pass)
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		default:
			t.Fatalf("%q: status %d", body, rec.Code)
		}
	})
}

// FuzzSignupForm: a sign-up answers 303 only for valid credentials, which
// then log in, every byte of the password counting; otherwise one of 400,
// 409, 413, 429 with the form.
func FuzzSignupForm(f *testing.F) {
	a := newAuthFuzzer(f, "/signup")
	f.Fuzz(func(t *testing.T, ct, body string) {
		rec, user, pass := a.post(t, ct, body)
		switch rec.Code {
		case http.StatusSeeOther:
			if err := app.ValidateCredentials(user, pass); err != nil {
				t.Fatalf("%q signed up %q: %v", body, user, err)
			}
			ctx := context.Background()
			if _, err := a.ts.store.Authenticate(ctx, user, pass); err != nil {
				t.Fatalf("signed up %q, but its password does not log in: %v", user, err)
			}
			if _, err := a.ts.store.Authenticate(ctx, user, pass[:len(pass)-1]); err == nil {
				t.Fatalf("signed up %q: its password less its last byte logs in", user)
			}
		case http.StatusBadRequest, http.StatusConflict, http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		default:
			t.Fatalf("%q: status %d", body, rec.Code)
		}
	})
}
