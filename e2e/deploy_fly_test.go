package e2e

// fly.toml and litefs.yml, read as flyctl and LiteFS read them, against
// the Dockerfile, docs/DEPLOY.md and a running node of the built binary.

import (
	"maps"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"notesync/internal/deploytest"
)

var (
	// The forms LiteFS's ExpandEnv accepts inside ${...} besides a name.
	litefsExprQuoted = regexp.MustCompile(`^(\w+)\s*(==|!=)\s*(?:'.*'|".*")$`)
	litefsExprVars   = regexp.MustCompile(`^(\w+)\s*(==|!=)\s*(\w+)$`)
)

// litefsVars lists the environment variables litefs.yml reads, with LiteFS's
// syntax: $NAME, ${NAME}, ${A == B}, ${A != "x"}. LiteFS expands the whole
// file, comments included.
func litefsVars(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(deploytest.Path(t, "litefs.yml"))
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	os.Expand(string(b), func(v string) string {
		v = strings.TrimSpace(v)
		if a := litefsExprVars.FindStringSubmatch(v); a != nil {
			seen[a[1]], seen[a[3]] = true, true
		} else if a := litefsExprQuoted.FindStringSubmatch(v); a != nil {
			seen[a[1]] = true
		} else {
			seen[v] = true
		}
		return ""
	})
	var out []string
	for v := range seen {
		out = append(out, v)
	}
	sort.Strings(out)
	return out
}

func TestFlyTOML(t *testing.T) {
	fc := deploytest.FlyTOML(t)
	runtime := deploytest.Dockerfile(t)
	env := runtime[len(runtime)-1].Env(t)

	if fc.App == "" {
		t.Error("fly.toml: no app name")
	}
	if !regexp.MustCompile(`^[a-z]{3}$`).MatchString(fc.PrimaryRegion) {
		t.Errorf("primary_region %q: want a Fly region code", fc.PrimaryRegion)
	}
	// LiteFS's candidate flag compares FLY_REGION with PRIMARY_REGION. Fly
	// sets PRIMARY_REGION from primary_region; [env] must not say otherwise.
	if pr, ok := fc.Env["PRIMARY_REGION"]; ok && pr != fc.PrimaryRegion {
		t.Errorf("[env] PRIMARY_REGION=%q but primary_region=%q: no machine would be a lease candidate where machines are created", pr, fc.PrimaryRegion)
	}
	for k := range fc.Env {
		if strings.HasPrefix(k, "FLY_") {
			t.Errorf("[env] %s: Fly reserves FLY_ variables", k)
		}
	}
	if fc.Build.Dockerfile != "" && fc.Build.Dockerfile != "Dockerfile" {
		t.Errorf("[build] dockerfile = %q", fc.Build.Dockerfile)
	}

	// Shutdown: the app closes sockets with 1001 (3 s), drains requests (up
	// to 10 s) and leaves the cluster (2 s); LiteFS then releases the lease.
	if fc.KillSignal != "SIGTERM" && fc.KillSignal != "SIGINT" {
		t.Errorf("kill_signal %q: LiteFS passes SIGTERM or SIGINT on to the app; others kill it", fc.KillSignal)
	}
	if d := deploytest.Duration(t, "kill_timeout", fc.KillTimeout); d < 15*time.Second || d > 300*time.Second {
		t.Errorf("kill_timeout %v: want 15 s (the app's shutdown) to 300 s (Fly's maximum)", d)
	}

	// Machines stay up: LiteFS on machines that stop when idle risks a stale
	// primary, and open tabs hold connections anyway.
	if v := fc.HTTPService.AutoStopMachines; v != "off" && v != false {
		t.Errorf("auto_stop_machines = %v, want \"off\"", v)
	}
	if c := fc.HTTPService.Concurrency; c.Type != "connections" || c.SoftLimit <= 0 || c.HardLimit < c.SoftLimit {
		t.Errorf("concurrency %+v: want type connections (one long-lived socket per tab) with 0 < soft_limit <= hard_limit", c)
	}
	if !fc.HTTPService.ForceHTTPS {
		t.Error("force_https is off: session cookies are Secure only over https")
	}

	// The volume holds LiteFS's data dir, where the Dockerfile points LiteFS.
	if fc.Mounts.Source == "" || fc.Mounts.Destination != env["LITEFS_DATA_DIR"] {
		t.Errorf("[mounts] %+v: want the volume at LITEFS_DATA_DIR=%q", fc.Mounts, env["LITEFS_DATA_DIR"])
	}

	// The proxy, the checks and Fly's scraper reach the ports the node
	// listens on: TestFlyPortsAreWhereTheNodeListens (package main) parses
	// the node's configuration on a machine. The metrics have a port of
	// their own, which no service exposes (docs/PROTOCOL.md §8).
	if fc.Metrics.Port == fc.HTTPService.InternalPort {
		t.Errorf("[metrics] port %d is the public service's port", fc.Metrics.Port)
	}

	// Liveness routes traffic; readiness is checked too. Every check path
	// is answered 200 by a running node, before its timeout (/readyz gives
	// itself 2 s).
	checks := map[string]deploytest.FlyCheck{}
	for _, c := range fc.HTTPService.Checks {
		checks["http_service "+c.Path] = c
	}
	for name, c := range fc.Checks {
		checks["checks."+name+" "+c.Path] = c
		if c.Type != "http" || c.Port != fc.HTTPService.InternalPort {
			t.Errorf("[checks.%s] type %q port %d: want an http check on internal_port %d", name, c.Type, c.Port, fc.HTTPService.InternalPort)
		}
	}
	var haveHealthz, haveReadyz bool
	for _, c := range fc.HTTPService.Checks {
		haveHealthz = haveHealthz || c.Path == "/healthz"
	}
	n := startNode(t)
	for name, c := range checks {
		haveReadyz = haveReadyz || c.Path == "/readyz"
		if c.Method != "" && !strings.EqualFold(c.Method, "GET") {
			t.Errorf("%s: method %s", name, c.Method)
		}
		if d := deploytest.Duration(t, name+" timeout", c.Timeout); d <= 2*time.Second {
			t.Errorf("%s: timeout %v: /readyz may take 2 s to say why it is not ready", name, d)
		}
		deploytest.Duration(t, name+" interval", c.Interval)
		deploytest.Duration(t, name+" grace_period", c.GracePeriod)
		resp, err := http.Get(n.URL + c.Path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: a running node answers %d", name, resp.StatusCode)
		}
	}
	if !haveHealthz || !haveReadyz {
		t.Errorf("want a service check on /healthz and a check on /readyz; have %v", slices.Sorted(maps.Keys(checks)))
	}

	if len(fc.VM) == 0 || fc.VM[0].Size == "" && fc.VM[0].Memory == "" {
		t.Error("no [[vm]] size: fly scale would infer one from whatever runs")
	}
}

func TestLiteFSConfigReadsOnlyWhatTheMachineHas(t *testing.T) {
	fc := deploytest.FlyTOML(t)
	stages := deploytest.Dockerfile(t)
	image := stages[len(stages)-1].Env(t)
	guide, err := os.ReadFile(deploytest.Path(t, "docs/DEPLOY.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range litefsVars(t) {
		_, inImage := image[v]
		_, inEnv := fc.Env[v]
		switch {
		case inImage, inEnv, slices.Contains(deploytest.RuntimeVars, v):
		case v == "HOSTNAME": // set by `litefs mount` itself when unset
		case slices.Contains(deploytest.Secrets, v):
			if !strings.Contains(string(guide), v) && !(v == "FLY_CONSUL_URL" && strings.Contains(string(guide), "fly consul attach")) {
				t.Errorf("litefs.yml reads %s, a secret docs/DEPLOY.md does not have the deployer set", v)
			}
		default:
			t.Errorf("litefs.yml reads ${%s}, which neither the Dockerfile, fly.toml [env], Fly nor a documented secret sets", v)
		}
	}
	// The secrets the node needs are in the guide's commands.
	for _, want := range []string{"fly consul attach", "fly secrets set", "SESSION_SECRET", "GOSSIP_KEY",
		"fly volumes create " + fc.Mounts.Source} {
		if !strings.Contains(string(guide), want) {
			t.Errorf("docs/DEPLOY.md never says %q", want)
		}
	}

	var lf map[string]any
	b, _ := os.ReadFile(deploytest.Path(t, "litefs.yml"))
	if err := yaml.Unmarshal(b, &lf); err != nil {
		t.Fatal(err)
	}
	// The LiteFS proxy cannot carry WebSockets: the app handles writes on
	// replicas itself.
	if _, ok := lf["proxy"]; ok {
		t.Error("litefs.yml has a proxy section")
	}

	// The lease on Fly: LiteFS's defaults, the app's key, and a candidate
	// that starts takes the lease (promote); the local cluster's values
	// come only from variables Fly leaves empty.
	for i, m := range deploytest.Machines(fc) {
		env := deploytest.MachineEnv(fc, image, m)
		l := litefsLease(t, env)
		candidate := i < 2
		if l.Candidate != candidate || !l.Promote || l.Consul.TTL != 0 || l.Consul.LockDelay != 0 || l.Consul.Key != "litefs/"+fc.App {
			t.Errorf("machine %s's lease: %+v; want candidate %v, promote, key litefs/%s and LiteFS's TTL and lock delay", m.ID, l, candidate, fc.App)
		}
	}
	// What the local cluster sets parses as LiteFS needs it.
	l := litefsLease(t, map[string]string{"FLY_REGION": "local", "PRIMARY_REGION": "local", "LITEFS_CONSUL_KEY_LOCAL": "local",
		"LITEFS_CONSUL_TTL": "5s", "LITEFS_CONSUL_LOCK_DELAY": "500ms", "LITEFS_LEASE_PROMOTE": "false"})
	if !l.Candidate || l.Promote || l.Consul.TTL != 5*time.Second || l.Consul.LockDelay != 500*time.Millisecond || l.Consul.Key != "litefs/local" {
		t.Errorf("the local cluster's lease: %+v", l)
	}
}

// leaseConfig is litefs.yml's lease section, the part these tests read.
type leaseConfig struct {
	Candidate bool
	Promote   bool
	Consul    struct {
		Key       string
		TTL       time.Duration
		LockDelay time.Duration `yaml:"lock-delay"`
	}
}

// litefsLease is litefs.yml's lease section as LiteFS reads it with env:
// expanded, ${A == B} and ${A != "x"} included, then parsed.
func litefsLease(t *testing.T, env map[string]string) leaseConfig {
	t.Helper()
	b, err := os.ReadFile(deploytest.Path(t, "litefs.yml"))
	if err != nil {
		t.Fatal(err)
	}
	quoted := regexp.MustCompile(`^(\w+)\s*(==|!=)\s*(?:'(.*)'|"(.*)")$`)
	expanded := os.Expand(string(b), func(v string) string {
		v = strings.TrimSpace(v)
		if a := litefsExprVars.FindStringSubmatch(v); a != nil {
			return strconv.FormatBool((env[a[1]] == env[a[3]]) == (a[2] == "=="))
		}
		if a := quoted.FindStringSubmatch(v); a != nil {
			return strconv.FormatBool((env[a[1]] == a[3]+a[4]) == (a[2] == "=="))
		}
		return env[v]
	})
	var lf struct{ Lease leaseConfig }
	if err := yaml.Unmarshal([]byte(expanded), &lf); err != nil {
		t.Fatalf("litefs.yml expanded as on a machine: %v", err)
	}
	return lf.Lease
}
