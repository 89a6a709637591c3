package cluster

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestPinner(t *testing.T) {
	p := &Pinner{Node: "148e21e4b16189", Machine: "148e21e4b16189", Region: "ams",
		MachineOf: func(name string) (string, bool) {
			if name == "syd-node" {
				return "3d8d9e2fa1c389", true
			}
			return "", false
		}}
	h := p.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	cases := []struct {
		query, replay string
	}{
		{"", ""},
		{"?node=148e21e4b16189", ""}, // pinned here
		{"?node=3d8d9e2fa1c389", "instance=3d8d9e2fa1c389"}, // another machine by id
		{"?node=syd-node", "instance=3d8d9e2fa1c389"},       // another member by name
		{"?node=nobody", ""},                                // unknown: served here, no loop
		{"?region=ams", ""},
		{"?region=syd", "region=syd"},
		{"?region=../x", ""},
	}
	for _, c := range cases {
		for _, path := range []string{"/", "/ws", "/events", "/api/notes"} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", path+c.query, nil))
			got := rec.Header().Get("fly-replay")
			if got != c.replay {
				t.Errorf("%s%s: fly-replay %q, want %q", path, c.query, got, c.replay)
			}
			if (got == "") != (rec.Code == http.StatusTeapot) {
				t.Errorf("%s%s: served here = %v with replay %q", path, c.query, rec.Code == http.StatusTeapot, got)
			}
		}
	}
}

func TestPinnerTakesFlyClientIP(t *testing.T) {
	var seen string
	p := &Pinner{Node: "n", MachineOf: func(string) (string, bool) { return "", false }}
	h := p.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen = r.RemoteAddr }))
	req := httptest.NewRequest("POST", "/login", nil)
	req.Header.Set("Fly-Client-IP", "203.0.113.9")
	h.ServeHTTP(httptest.NewRecorder(), req)
	if seen != "203.0.113.9:0" {
		t.Fatalf("RemoteAddr %q, want the client's", seen)
	}
	req = httptest.NewRequest("POST", "/login", nil)
	req.Header.Set("Fly-Client-IP", "not an ip")
	req.RemoteAddr = "10.0.0.1:5555"
	h.ServeHTTP(httptest.NewRecorder(), req)
	if seen != "10.0.0.1:5555" {
		t.Fatalf("RemoteAddr %q changed by a bad header", seen)
	}
}
