package main

import (
	"bufio"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The peer: Centrifugo v6 (bench/centrifugo.sh installs it), driven with
// the same users, tabs, write rate, backoff and delivery checks as
// notesync. Each user's tabs are subscribed, on connect, to the user's
// personal channel "#<user>" with history and recovery on, so the stream
// offset plays the part of notesync's version: a publish answers with the
// offset it got, a push carries it, and a reconnecting tab sends the last
// offset it saw and gets what it missed in the connect reply (notesync's
// ?since= and sync).

const (
	centrifugoVersion = "v6.9.1"
	peerSecret        = "notesync-bench-hmac-secret-0123456789"
	peerAPIKey        = "notesync-bench-api-key"
)

// peerExe finds the Centrifugo binary: exe if given, else where
// bench/centrifugo.sh installs it.
func peerExe(exe string) (string, error) {
	if exe == "" {
		dir := os.Getenv("NOTESYNC_PEER_DIR")
		if dir == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return "", err
			}
			dir = filepath.Join(home, ".cache", "notesync-bench")
		}
		exe = filepath.Join(dir, "centrifugo")
	}
	if _, err := os.Stat(exe); err != nil {
		return "", fmt.Errorf("no Centrifugo at %s: run bench/centrifugo.sh, or give -peer-exe", exe)
	}
	// A binary built by go install carries its module's version.
	out, err := exec.Command("go", "version", "-m", exe).Output()
	if err != nil || !strings.Contains(string(out), "github.com/centrifugal/centrifugo/v6\t"+centrifugoVersion) {
		return "", fmt.Errorf("%s is not Centrifugo %s built by go install: run bench/centrifugo.sh", exe, centrifugoVersion)
	}
	return exe, nil
}

// peerConfig is one Centrifugo node's configuration. redis is the engine's
// address ("": the in-memory engine).
func peerConfig(host string, port int, redis string) ([]byte, error) {
	engine := map[string]any{"type": "memory"}
	if redis != "" {
		engine = map[string]any{"type": "redis", "redis": map[string]any{"address": []string{"redis://" + redis}}}
	}
	return json.MarshalIndent(map[string]any{
		"http_server": map[string]any{"address": host, "port": port},
		"log":         map[string]any{"level": "error"},
		"client": map[string]any{
			"token":                              map[string]any{"hmac_secret_key": peerSecret},
			"allowed_origins":                    []string{"*"},
			"subscribe_to_user_personal_channel": map[string]any{"enabled": true},
		},
		"channel": map[string]any{"without_namespace": map[string]any{
			"history_size": 10000, "history_ttl": "3600s", "force_recovery": true,
		}},
		"http_api":   map[string]any{"key": peerAPIKey},
		"health":     map[string]any{"enabled": true},
		"prometheus": map[string]any{"enabled": true},
		"engine":     engine,
	}, "", "  ")
}

// startPeer starts one Centrifugo node, or three sharing a Redis engine
// (mode "cluster"), on 127.0.0.1 in a temporary directory. With redis
// set, a single node uses the Redis engine too, so that its history
// outlives a restart as notesync's change log does.
func startPeer(ctx context.Context, mode, exe string, redis bool, logf func(string, ...any)) (*nodes, error) {
	exe, err := peerExe(exe)
	if err != nil {
		return nil, err
	}
	n := 1
	switch mode {
	case "single":
	case "cluster":
		n, redis = 3, true
	default:
		return nil, fmt.Errorf("-start must be single or cluster, not %q", mode)
	}
	tmp, err := os.MkdirTemp("", "notesync-peer-")
	if err != nil {
		return nil, err
	}
	var procs []*proc
	var logs []*os.File
	stop := func() {
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].kill()
		}
		for _, f := range logs {
			f.Close()
		}
		os.RemoveAll(tmp)
	}
	start := func(name, exe string, args ...string) (*proc, error) {
		f, err := os.Create(filepath.Join(tmp, name+".log"))
		if err != nil {
			return nil, err
		}
		logs = append(logs, f)
		p := &proc{exe: exe, args: args, log: f}
		if err := p.launch(); err != nil {
			return nil, err
		}
		procs = append(procs, p)
		return p, nil
	}
	redisAddr := ""
	if redis {
		if redisAddr, err = startRedis(ctx, tmp, start); err != nil {
			stop()
			return nil, err
		}
		logf("redis-server on %s", redisAddr)
	}
	res := &nodes{Ready: "/health", stop: stop}
	var nodeProcs []*proc
	for i := range n {
		port, err := freePort("127.0.0.1")
		if err != nil {
			stop()
			return nil, err
		}
		cfg, _ := peerConfig("127.0.0.1", port, redisAddr)
		path := filepath.Join(tmp, fmt.Sprintf("node%d.json", i+1))
		if err := os.WriteFile(path, cfg, 0o600); err != nil {
			stop()
			return nil, err
		}
		p, err := start(fmt.Sprintf("node%d", i+1), exe, "--config", path)
		if err != nil {
			stop()
			return nil, err
		}
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		if err := waitReady(ctx, url+res.Ready, 60*time.Second); err != nil {
			stop()
			return nil, fmt.Errorf("centrifugo node%d: %w (log in %s)", i+1, err, tmp)
		}
		logf("centrifugo node%d ready at %s (pid %d)", i+1, url, p.pid())
		res.URLs = append(res.URLs, url)
		res.MetricsURLs = append(res.MetricsURLs, url) // on the client port
		nodeProcs = append(nodeProcs, p)
	}
	res.restart = func(i int) error {
		nodeProcs[i].kill()
		return nodeProcs[i].launch()
	}
	return res, nil
}

// startRedis runs redis-server on a free loopback port, without
// persistence, and waits until it answers PING.
func startRedis(ctx context.Context, dir string, start func(string, string, ...string) (*proc, error)) (string, error) {
	exe, err := exec.LookPath("redis-server")
	if err != nil {
		return "", fmt.Errorf("no redis-server for Centrifugo's multi-node engine: run bench/centrifugo.sh (apt-get install redis-server)")
	}
	port, err := freePort("127.0.0.1")
	if err != nil {
		return "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if _, err := start("redis", exe, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--maxclients", "10000"); err != nil {
		return "", err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(time.Second))
			io.WriteString(c, "PING\r\n")
			line, _ := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if strings.HasPrefix(line, "+PONG") {
				return addr, nil
			}
		}
		if time.Now().After(deadline) || !sleepCtx(ctx, 50*time.Millisecond) {
			return "", fmt.Errorf("redis-server on %s did not answer PING", addr)
		}
	}
}

// peerToken is a connection token for user name: an HS256 JWT whose sub
// is the user.
func peerToken(name string) string {
	enc := base64.RawURLEncoding
	claims, _ := json.Marshal(map[string]any{"sub": name})
	unsigned := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, []byte(peerSecret))
	mac.Write([]byte(unsigned))
	return unsigned + "." + enc.EncodeToString(mac.Sum(nil))
}

// peerChannel is the personal channel of user name.
func peerChannel(name string) string { return "#" + name }

// peerPublish is a write for the peer: a publish to the user's channel
// through the node's HTTP API.
func peerPublish(base string, u benchUser, body string) *http.Request {
	data, _ := json.Marshal(map[string]any{"channel": peerChannel(u.Name), "data": map[string]string{"body": body}})
	req, _ := http.NewRequest("POST", base+"/api/publish", strings.NewReader(string(data)))
	req.Header.Set("X-API-Key", peerAPIKey)
	req.Header.Set("Content-Type", "application/json")
	return req
}

// peerVersion reads the offset a publish got (0: it failed).
func peerVersion(r io.Reader) int64 {
	var out struct {
		Result struct {
			Offset int64 `json:"offset"`
		} `json:"result"`
	}
	if json.NewDecoder(r).Decode(&out) != nil {
		return 0
	}
	return out.Result.Offset
}
