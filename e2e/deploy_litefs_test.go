package e2e

// What the image runs: the real LiteFS binary (the version go.mod pins)
// with the repository's litefs.yml and a machine's environment, under a
// Consul lease served by a stand-in Consul.

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"notesync/cluster/local"
	"notesync/internal/deploytest"
	"notesync/internal/testenv"
)

// fakeConsul answers the Consul HTTP API calls LiteFS's lease makes and
// records them.
type fakeConsul struct {
	token string

	mu       sync.Mutex
	reqs     []consulReq
	kv       map[string]consulKV
	sessions map[string]bool
	n        int
}

type consulReq struct {
	Method, Path, Query, Token string
	Body                       []byte
}

type consulKV struct {
	Value   []byte
	Session string
}

func newFakeConsul(token string) *fakeConsul {
	return &fakeConsul{token: token, kv: map[string]consulKV{}, sessions: map[string]bool{}}
}

func (c *fakeConsul) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.reqs = append(c.reqs, consulReq{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("X-Consul-Token"), body})
	if r.Header.Get("X-Consul-Token") != c.token {
		http.Error(w, "ACL not found", http.StatusForbidden)
		return
	}
	q := r.URL.Query()
	p := r.URL.Path
	switch {
	case p == "/v1/catalog/register" && r.Method == "PUT":
		io.WriteString(w, "true")
	case p == "/v1/session/create" && r.Method == "PUT":
		c.n++
		id := fmt.Sprintf("00000000-0000-0000-0000-%012d", c.n)
		c.sessions[id] = true
		json.NewEncoder(w).Encode(map[string]string{"ID": id})
	case strings.HasPrefix(p, "/v1/session/renew/"):
		id := strings.TrimPrefix(p, "/v1/session/renew/")
		if !c.sessions[id] {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode([]map[string]string{{"ID": id, "TTL": "10s"}})
	case strings.HasPrefix(p, "/v1/session/destroy/"):
		id := strings.TrimPrefix(p, "/v1/session/destroy/")
		delete(c.sessions, id)
		for k, e := range c.kv {
			if e.Session == id {
				delete(c.kv, k)
			}
		}
		io.WriteString(w, "true")
	case strings.HasPrefix(p, "/v1/kv/") && r.Method == "GET":
		key := strings.TrimPrefix(p, "/v1/kv/")
		e, ok := c.kv[key]
		if !ok {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode([]map[string]any{{"Key": key, "Value": e.Value, "Session": e.Session, "Flags": 0}})
	case strings.HasPrefix(p, "/v1/kv/") && r.Method == "PUT":
		key := strings.TrimPrefix(p, "/v1/kv/")
		switch {
		case q.Has("acquire"):
			sid := q.Get("acquire")
			if e, ok := c.kv[key]; (ok && e.Session != "" && e.Session != sid) || !c.sessions[sid] {
				io.WriteString(w, "false")
				return
			}
			c.kv[key] = consulKV{Value: body, Session: sid}
			io.WriteString(w, "true")
		case q.Has("release"):
			if e, ok := c.kv[key]; ok && e.Session == q.Get("release") {
				c.kv[key] = consulKV{Value: e.Value}
			}
			io.WriteString(w, "true")
		default:
			c.kv[key] = consulKV{Value: body}
			io.WriteString(w, "true")
		}
	default:
		http.Error(w, "not in this stand-in", http.StatusNotImplemented)
	}
}

func (c *fakeConsul) requests() []consulReq {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.reqs)
}

// seen reports whether a request matching method, path and (if not empty)
// a query prefix was made.
func (c *fakeConsul) seen(method, p, query string) (consulReq, bool) {
	for _, r := range c.requests() {
		if r.Method == method && r.Path == p && strings.HasPrefix(r.Query, query) {
			return r, true
		}
	}
	return consulReq{}, false
}

// litefsRun is one `litefs mount` under test.
type litefsRun struct {
	cmd      *exec.Cmd
	out      *testenv.SyncBuffer
	mountDir string
	envFile  string // written by the exec'd stand-in app
	done     chan struct{}
}

// startLiteFS runs the real LiteFS with the repository's litefs.yml and the
// environment of machine m. Paths and the API port are moved into a temp dir
// and a free port (the only changes to what the image runs), and the app is
// a stand-in script that records the environment it was started with.
func startLiteFS(t *testing.T, fc *deploytest.FlyConfig, image map[string]string, m deploytest.Machine, consulURL string) *litefsRun {
	t.Helper()
	bin, err := local.LiteFSBinary(os.Getenv("LITEFS_BIN"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := &litefsRun{out: &testenv.SyncBuffer{}, mountDir: filepath.Join(dir, "mnt"), envFile: filepath.Join(dir, "app.env"), done: make(chan struct{})}
	for _, d := range []string{run.mountDir, filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	app := filepath.Join(dir, "notesync")
	script := "#!/bin/sh\nenv > " + run.envFile + ".tmp && mv " + run.envFile + ".tmp " + run.envFile + "\n" +
		"trap 'exit 0' TERM INT\nwhile kill -0 $PPID 2>/dev/null; do sleep 1 & wait $!; done\n"
	if err := os.WriteFile(app, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	apiAddr := ln.Addr().String()
	ln.Close()

	env := deploytest.MachineEnv(fc, image, m)
	env["FLY_CONSUL_URL"] = consulURL
	env["LITEFS_DIR"] = run.mountDir
	env["LITEFS_DATA_DIR"] = filepath.Join(dir, "data")
	env["LITEFS_HTTP_ADDR"] = apiAddr
	env["LITEFS_URL"] = "http://" + apiAddr
	env["NOTESYNC_CMD"] = app
	env["PATH"] = os.Getenv("PATH")
	env["HOME"] = dir
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	run.cmd = exec.Command(bin, "mount", "-config", deploytest.Path(t, "litefs.yml"))
	run.cmd.Env = envList
	run.cmd.Stdout, run.cmd.Stderr = run.out, run.out
	run.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := run.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { run.cmd.Wait(); close(run.done) }()
	t.Cleanup(func() {
		run.stop(t, 5*time.Second)
		if t.Failed() {
			t.Logf("litefs output:\n%s", run.out.String())
		}
	})
	return run
}

// startLiteFSWithConsul starts a stand-in Consul that takes token and
// startLiteFS against it, its URL as `fly consul attach` gives it: the
// token as the password, the app's key prefix as the path.
func startLiteFSWithConsul(t *testing.T, fc *deploytest.FlyConfig, image map[string]string, m deploytest.Machine, token, prefix string) (*fakeConsul, *litefsRun) {
	t.Helper()
	consul := newFakeConsul(token)
	srv := httptest.NewServer(consul)
	t.Cleanup(srv.Close)
	return consul, startLiteFS(t, fc, image, m, strings.Replace(srv.URL, "http://", "http://:"+token+"@", 1)+"/"+prefix+"/")
}

// stop sends SIGTERM (Fly's kill_signal), waits, then kills what is left
// and removes the mount.
func (r *litefsRun) stop(t *testing.T, grace time.Duration) (clean bool) {
	if r.cmd.Process != nil {
		_ = r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
			clean = true
		case <-time.After(grace):
		}
		_ = syscall.Kill(-r.cmd.Process.Pid, syscall.SIGKILL)
		<-r.done
	}
	if isMounted(r.mountDir) {
		if out, err := exec.Command("fusermount3", "-u", "-z", r.mountDir).CombinedOutput(); err != nil {
			t.Errorf("unmount %s: %v %s", r.mountDir, err, out)
		}
	}
	return clean
}

func waitFor(t *testing.T, r *litefsRun, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		select {
		case <-r.done:
			t.Fatalf("litefs exited while waiting for %s:\n%s", what, r.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestLiteFSConfigOnFly(t *testing.T) {
	testenv.NeedFUSE(t)
	fc := deploytest.FlyTOML(t)
	stages := deploytest.Dockerfile(t)
	image := stages[len(stages)-1].Env(t)
	const token = "consul-token"
	prefix := fc.App + "-1a2b3c4d"
	wantKey := prefix + "/litefs/" + fc.App // litefs.yml's key under the app's Consul prefix

	t.Run("primary region: candidate, takes the lease, starts the app", func(t *testing.T) {
		m := deploytest.Machines(fc)[0]
		consul, run := startLiteFSWithConsul(t, fc, image, m, token, prefix)

		waitFor(t, run, "app started through litefs.yml's exec", 30*time.Second, func() bool {
			_, err := os.Stat(run.envFile)
			return err == nil
		})
		checkFlySession(t, consul)
		acq, ok := consul.seen("PUT", "/v1/kv/"+wantKey, "acquire=")
		if !ok {
			t.Fatalf("no lease acquired on key %q: requests %v", wantKey, consul.requests())
		}
		for _, r := range consul.requests() {
			if r.Token != token {
				t.Errorf("Consul %s %s without the token from FLY_CONSUL_URL", r.Method, r.Path)
			}
		}
		if !isMounted(run.mountDir) {
			t.Errorf("LITEFS_DIR %s is not mounted while the app runs", run.mountDir)
		}

		// The app runs with the machine's environment.
		b, _ := os.ReadFile(run.envFile)
		appEnv := map[string]string{}
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, "="); ok {
				appEnv[k] = v
			}
		}
		for _, k := range []string{"FLY_MACHINE_ID", "FLY_REGION", "FLY_PRIVATE_IP", "PORT", "GOSSIP_BIND", "SESSION_SECRET", "GOSSIP_KEY", "LITEFS_DIR", "LITEFS_URL"} {
			if appEnv[k] == "" {
				t.Errorf("the app started without %s", k)
			}
		}

		// What other machines read from Consul to reach this primary.
		var info struct {
			Hostname     string `json:"hostname"`
			AdvertiseURL string `json:"advertise-url"`
		}
		if err := json.Unmarshal(acq.Body, &info); err != nil {
			t.Fatalf("lease value %q: %v", acq.Body, err)
		}
		t.Run("advertise URL reachable from other machines", func(t *testing.T) {
			u, err := url.Parse(info.AdvertiseURL)
			if err != nil {
				t.Fatalf("advertise URL %q: %v", info.AdvertiseURL, err)
			}
			switch {
			case u.Hostname() == m.ID+".vm."+fc.App+".internal", net.ParseIP(u.Hostname()).Equal(net.ParseIP(m.PrivateIP)):
			default:
				t.Errorf("advertise URL %s: other machines reach this one at %s.vm.%s.internal or [%s]", info.AdvertiseURL, m.ID, fc.App, m.PrivateIP)
			}
		})

		// Fly's kill_signal: the app stops, then LiteFS gives the lease up at
		// once, so another candidate need not wait for the TTL.
		if !run.stop(t, 10*time.Second) {
			t.Errorf("litefs did not exit within 10 s of SIGTERM")
		}
		if _, ok := consul.seen("PUT", "/v1/kv/"+wantKey, "release="); !ok {
			t.Errorf("lease not released on SIGTERM: requests %v", consul.requests())
		}
	})

	t.Run("other region: never a candidate, waits for a primary", func(t *testing.T) {
		m := deploytest.Machines(fc)[2]
		consul, run := startLiteFSWithConsul(t, fc, image, m, token, prefix)

		waitFor(t, run, "a look-up of the primary in Consul", 30*time.Second, func() bool {
			_, ok := consul.seen("GET", "/v1/kv/"+wantKey, "")
			return ok
		})
		// A candidate takes the lease on its first look; give it a second more.
		time.Sleep(1500 * time.Millisecond)
		for _, r := range consul.requests() {
			if r.Path == "/v1/session/create" || strings.HasPrefix(r.Query, "acquire=") {
				t.Errorf("a machine outside PRIMARY_REGION tried to become primary: %s %s?%s", r.Method, r.Path, r.Query)
			}
		}
		if _, err := os.Stat(run.envFile); err == nil {
			t.Errorf("the app started with no primary to replicate from")
		}
		if !strings.Contains(run.out.String(), "ineligible to become primary") {
			t.Errorf("LiteFS did not say it is not a candidate:\n%s", run.out.String())
		}
		// LiteFS handles signals only once connected to a cluster: a replica
		// with no primary to reach waits for kill_timeout. Do not wait here.
		run.stop(t, 200*time.Millisecond)
	})
}

// checkFlySession checks the session LiteFS created on Fly's Consul: the
// local cluster's TTL and lock delay stay local, and Fly gets LiteFS's own
// (10 s, 1 s).
func checkFlySession(t *testing.T, consul *fakeConsul) {
	t.Helper()
	create, ok := consul.seen("PUT", "/v1/session/create", "")
	if !ok {
		t.Errorf("no Consul session: requests %v", consul.requests())
		return
	}
	var sess struct{ TTL, LockDelay string }
	err := json.Unmarshal(create.Body, &sess)
	if d, _ := time.ParseDuration(sess.LockDelay); err != nil || sess.TTL != "10s" || d != time.Second {
		t.Errorf("session %s (%v): want LiteFS's TTL 10s and lock delay 1s", create.Body, err)
	}
}
