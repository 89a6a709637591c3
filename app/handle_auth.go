package app

import (
	"errors"
	"math"
	"net"
	"net/http"
	"strconv"
	"time"

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
	status := ErrorStatus(err)
	if status >= 500 {
		s.Logger.Error("auth", "mode", mode, "err", err)
	}
	var e *Error
	if errors.As(err, &e) && e.RetryAfter > 0 {
		w.Header().Set("Retry-After", itoa(e.RetryAfter))
	}
	s.render(w, r, status, "login.html", authPage{Mode: mode, Error: ErrorMessage(err), Username: username})
}

func (s *Server) handleSignup(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	username := NormalizeUsername(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	u, err := s.Store.CreateUser(r.Context(), username, password)
	if err != nil {
		s.renderAuthError(w, r, "signup", username, err)
		return
	}
	if err := s.startSession(w, r, u); err != nil {
		s.renderAuthError(w, r, "signup", username, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) handleLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	username := NormalizeUsername(r.PostFormValue("username"))
	password := r.PostFormValue("password")
	addr := clientAddr(r)
	if wait := max(s.userLimit.Check("u:"+username), s.addrLimit.Check("a:"+addr)); wait > 0 {
		s.renderAuthError(w, r, "login", username, &Error{
			Code:       ETOOMANY,
			Message:    "too many failed log-ins; try again later",
			RetryAfter: retryAfter(wait),
		})
		return
	}
	u, err := s.Store.Authenticate(r.Context(), username, password)
	if err != nil {
		if ErrorCode(err) == EUNAUTHORIZED {
			s.userLimit.Fail("u:" + username)
			s.addrLimit.Fail("a:" + addr)
		}
		s.renderAuthError(w, r, "login", username, err)
		return
	}
	if err := s.startSession(w, r, u); err != nil {
		s.renderAuthError(w, r, "login", username, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// startSession stores a new session for u and sets its cookie.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, u *User) error {
	sess, err := s.Sessions.New(r, SessionCookie)
	if err != nil {
		return err
	}
	// Always a fresh id at log-in, never one the client brought.
	sess.ID = ""
	sess.IsNew = true
	sess.Values = map[any]any{"user_id": u.ID, "username": u.Username}
	return s.Sessions.Save(r, w, sess)
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
func (s *Server) requireUser(h func(http.ResponseWriter, *http.Request, *Session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := s.identify(r)
		if err != nil {
			if errors.Is(err, realtime.ErrUnauthenticated) {
				s.writeError(w, r, Errorf(EUNAUTHORIZED, "not signed in"))
				return
			}
			s.writeError(w, r, err)
			return
		}
		h(w, r, u)
	})
}

// clientAddr is the client's IP address as this node sees it.
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func itoa(n int) string { return strconv.Itoa(n) }

// retryAfter rounds d up to whole seconds, at least 1.
func retryAfter(d time.Duration) int { return max(1, int(math.Ceil(d.Seconds()))) }
