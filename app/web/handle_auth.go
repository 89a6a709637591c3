package web

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"notesync/app"
	"notesync/realtime"
)

// authPage is the data of login.html.
type authPage struct {
	Mode     string // "login" or "signup"
	Error    string
	Username string
}

func (s *Server) handleAuthPage(mode string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if _, err := s.identify(r); err == nil {
			http.Redirect(w, r, "/", http.StatusSeeOther)
			return
		}
		s.render(w, r, http.StatusOK, "login.html", authPage{Mode: mode})
	}
}

// renderAuthError re-renders the form with the reason and the fitting
// status.
func (s *Server) renderAuthError(w http.ResponseWriter, r *http.Request, mode, username string, err error) {
	if s.clientGone(r, err) {
		return
	}
	status := ErrorStatus(err)
	if status >= 500 {
		s.Logger.Error("auth", "mode", mode, "err", err)
	}
	setErrorHeaders(w, err)
	s.render(w, r, status, "login.html", authPage{Mode: mode, Error: app.ErrorMessage(err), Username: username})
}

// Log-in and sign-up limits (docs/PROTOCOL.md §8). Failed log-ins are
// counted per username and client address, and per client address; a
// username alone is slowed down past a few failures, never shut out (see
// DeviceCookie). Every sign-up counts, per client address.
const (
	loginWindow      = 10 * time.Minute
	loginsPerPair    = 5
	loginsPerAddr    = 20
	loginsPerUser    = 5 // then spaced out, from 1 s doubling to a minute
	loginUserSpacing = time.Second
	signupWindow     = time.Hour
)

// readAuthForm reads the username and password of a log-in or sign-up form.
func readAuthForm(w http.ResponseWriter, r *http.Request) (username, password string, err error) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := parseForm(r, 16<<10); err != nil {
		return "", "", bodyError(err, "unreadable form")
	}
	return app.NormalizeUsername(r.PostForm.Get("username")), r.PostForm.Get("password"), nil
}

func (s *Server) handleSignup(w http.ResponseWriter, r *http.Request) {
	username, password, err := readAuthForm(w, r)
	if err == nil {
		err = app.ValidateCredentials(username, password)
	}
	if err != nil {
		s.renderAuthError(w, r, "signup", username, err)
		return
	}
	if s.SignupLimit > 0 {
		// Every sign-up costs a password hash, whatever its outcome.
		res, wait := s.signups.Reserve(Rule{Key: clientKey(r), Max: s.SignupLimit})
		if wait > 0 {
			s.renderAuthError(w, r, "signup", username, tooMany("Too many sign-ups from your network", wait))
			return
		}
		defer res.Settle(true)
	}
	u, err := s.Store.CreateUser(r.Context(), username, password)
	if err == nil {
		err = s.startSession(w, r, u)
	}
	if err != nil {
		s.renderAuthError(w, r, "signup", username, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	username, password, err := readAuthForm(w, r)
	if err == nil {
		err = app.CheckPasswordLength(password, 0)
	}
	if err != nil {
		s.renderAuthError(w, r, "login", username, err)
		return
	}
	// The place is taken before the password is checked, so that guesses
	// sent in parallel are counted before any of them is checked.
	addr := clientKey(r)
	pair := "ua:" + username + "\x00" + addr
	rules := []Rule{
		{Key: pair, Max: loginsPerPair},
		{Key: "a:" + addr, Max: loginsPerAddr},
	}
	// The username's spacing holds back guesses from addresses that have
	// failed for it; an address that has not is not made to wait behind
	// them (its pair rule bounds it), nor is a browser that logged in
	// before.
	if !s.Sessions.KnownDevice(r, username) && s.logins.Failures(pair) > 0 {
		rules = append(rules, Rule{Key: "u:" + username, Max: loginsPerUser, Slow: loginUserSpacing})
	}
	res, wait := s.logins.Reserve(rules...)
	if wait > 0 {
		// A refused attempt counts against its address, so that polling
		// for the username's next place costs the poller.
		s.logins.Fail("a:" + addr)
		s.renderAuthError(w, r, "login", username, tooMany("Too many failed log-ins", wait))
		return
	}
	u, err := s.Store.Authenticate(r.Context(), username, password)
	res.Settle(app.ErrorCode(err) == app.EUNAUTHORIZED)
	if err == nil {
		err = s.startSession(w, r, u)
	}
	if err != nil {
		s.renderAuthError(w, r, "login", username, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// tooMany is the 429 of a limit, saying when to try again.
func tooMany(what string, wait time.Duration) error {
	secs := retryAfter(wait)
	return &app.Error{Code: app.ETOOMANY, Message: what + ". Try again in " + inWords(secs) + ".", RetryAfter: secs}
}

// inWords says a number of seconds in plain words: "45 seconds", "3 minutes".
func inWords(secs int) string {
	plural := func(n int, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return itoa(n) + " " + unit + "s"
	}
	if secs < 60 {
		return plural(secs, "second")
	}
	return plural((secs+59)/60, "minute")
}

// startSession stores a new session for u and sets its cookie.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, u *app.User) error {
	sess, err := s.Sessions.New(r, SessionCookie)
	if err != nil {
		return err
	}
	// Always a fresh id at log-in, never one the client brought.
	sess.ID = ""
	sess.IsNew = true
	sess.Values = map[any]any{"user_id": u.ID, "username": u.Username}
	if err := s.Sessions.Save(r, w, sess); err != nil {
		return err
	}
	return s.Sessions.RememberDevice(w, r, u.Username)
}

// handleLogout ends the session everywhere: the row is deleted (so the
// cookie authenticates on no node) and its open connections are closed with
// 1008 auth_required.
func (s *Server) handleLogout(w http.ResponseWriter, r *http.Request) {
	sess, err := s.Sessions.Get(r, SessionCookie)
	if err == nil && !sess.IsNew {
		id := sess.ID
		sess.Options.MaxAge = -1
		if err := s.Sessions.Save(r, w, sess); err != nil {
			s.writeError(w, r, err)
			return
		}
		s.EndSession(id)
	}
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// requireUser answers 401 unless the request has a session, and passes the
// session on.
func (s *Server) requireUser(h func(http.ResponseWriter, *http.Request, *User)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.identify(r)
		if err != nil {
			if errors.Is(err, realtime.ErrUnauthenticated) {
				s.writeError(w, r, app.Errorf(app.EUNAUTHORIZED, "not signed in"))
				return
			}
			s.writeError(w, r, err)
			return
		}
		h(w, r, u)
	})
}

func itoa(n int) string { return strconv.Itoa(n) }

// retryAfter rounds d up to whole seconds, at least 1.
func retryAfter(d time.Duration) int { return max(1, int(math.Ceil(d.Seconds()))) }
