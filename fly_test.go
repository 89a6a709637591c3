package main

// The node's configuration as it starts on a Fly.io machine: the command
// line litefs.yml's exec runs, with the environment the image, fly.toml,
// Fly and the deployer's secrets give it (read by internal/deploytest),
// parsed by the node's own flag parser. The deploy files themselves are
// tested in e2e/.

import (
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"notesync/internal/deploytest"
)

// machineConfig parses the node's configuration as it starts on machine m:
// the command line litefs.yml's exec runs, with the machine's environment.
func machineConfig(t testing.TB, fc *deploytest.FlyConfig, image map[string]string, m deploytest.Machine) *config {
	t.Helper()
	env := deploytest.MachineEnv(fc, image, m)
	args := deploytest.ExecArgs(t, env)
	cfg, err := parseConfig(args[1:], func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("machine %s: the node refuses to start: %v", m.ID, err)
	}
	return cfg
}

// TestFlyPortsAreWhereTheNodeListens checks that Fly's proxy, its checks
// and its metrics scraper reach the ports the node listens on as it starts
// on a machine.
func TestFlyPortsAreWhereTheNodeListens(t *testing.T) {
	fc := deploytest.FlyTOML(t)
	runtime := deploytest.Dockerfile(t)
	env := runtime[len(runtime)-1].Env(t)

	// The proxy and the checks reach the port the app listens on.
	cfg := machineConfig(t, fc, env, deploytest.Machines(fc)[0])
	_, port, _ := net.SplitHostPort(cfg.HTTPAddr)
	if strconv.Itoa(fc.HTTPService.InternalPort) != port {
		t.Errorf("internal_port %d, but the app listens on %s", fc.HTTPService.InternalPort, cfg.HTTPAddr)
	}
	for _, in := range runtime[len(runtime)-1].All("EXPOSE") {
		if in.Args != port {
			t.Errorf("EXPOSE %s, but the app listens on %s", in.Args, port)
		}
	}

	// Fly scrapes the metrics where the node serves them: on a port of
	// their own, which no service exposes (docs/PROTOCOL.md §8).
	_, mport, _ := net.SplitHostPort(cfg.MetricsAddr)
	if fc.Metrics.Port == 0 || strconv.Itoa(fc.Metrics.Port) != mport || fc.Metrics.Path != "/metrics" {
		t.Errorf("[metrics] %+v, but the node serves /metrics on %q", fc.Metrics, cfg.MetricsAddr)
	}
}

func TestFlyMachinesStartAsDistinctNodes(t *testing.T) {
	fc := deploytest.FlyTOML(t)
	stages := deploytest.Dockerfile(t)
	image := stages[len(stages)-1].Env(t)

	env := deploytest.MachineEnv(fc, image, deploytest.Machines(fc)[0])
	if args := deploytest.ExecArgs(t, env); args[0] != image["NOTESYNC_CMD"] {
		t.Errorf("litefs.yml's exec runs %q, not NOTESYNC_CMD=%q", args[0], image["NOTESYNC_CMD"])
	}

	_, bindPort, err := net.SplitHostPort(fc.Env["GOSSIP_BIND"])
	if err != nil {
		t.Fatalf("[env] GOSSIP_BIND=%q: %v", fc.Env["GOSSIP_BIND"], err)
	}
	names, adverts := map[string]bool{}, map[string]bool{}
	for _, m := range deploytest.Machines(fc) {
		cfg := machineConfig(t, fc, image, m)
		// Unique names: memberlist refuses a second node of the same name,
		// and a tab pins itself with ?node=<machine id>.
		if cfg.Node != m.ID || names[cfg.Node] {
			t.Errorf("machine %s: node name %q, want its machine id", m.ID, cfg.Node)
		}
		names[cfg.Node] = true
		if cfg.Region != m.Region {
			t.Errorf("machine %s: region %q, want %q", m.ID, cfg.Region, m.Region)
		}
		// What .primary names on Fly: LiteFS's hostname, the machine id.
		if cfg.LiteFSHostname != m.ID {
			t.Errorf("machine %s: LiteFS hostname %q, want the machine id", m.ID, cfg.LiteFSHostname)
		}
		// The database is on the LiteFS mount, not the machine's root fs.
		if want := filepath.Join(image["LITEFS_DIR"], "notesync.db"); cfg.DBPath != want || cfg.LiteFSDir != image["LITEFS_DIR"] {
			t.Errorf("machine %s: database %q (LiteFS dir %q), want %q", m.ID, cfg.DBPath, cfg.LiteFSDir, want)
		}
		if cfg.LiteFSURL != image["LITEFS_URL"] {
			t.Errorf("machine %s: LiteFS API %q, want %q", m.ID, cfg.LiteFSURL, image["LITEFS_URL"])
		}
		// Gossip: other machines reach this one at its 6PN address.
		if cfg.GossipBind == "" {
			t.Fatalf("machine %s: no gossip: a cluster of one", m.ID)
		}
		host, port, err := net.SplitHostPort(cfg.GossipAdvert)
		if ip := net.ParseIP(host); err != nil || ip == nil || !ip.Equal(net.ParseIP(m.PrivateIP)) || port != bindPort || adverts[cfg.GossipAdvert] {
			t.Errorf("machine %s: gossip advertises %q, want [FLY_PRIVATE_IP]:%s ([%s]:%s)", m.ID, cfg.GossipAdvert, bindPort, m.PrivateIP, bindPort)
		}
		adverts[cfg.GossipAdvert] = true
		if want := []string{fc.App + ".internal:" + bindPort}; !slices.Equal(cfg.Peers, want) {
			t.Errorf("machine %s: peers %v, want %v (every started machine of the app)", m.ID, cfg.Peers, want)
		}
		if !cfg.GossipWAN {
			t.Errorf("machine %s: LAN gossip timings between regions", m.ID)
		}
		if len(cfg.GossipKey) == 0 {
			t.Errorf("machine %s: gossip is not encrypted", m.ID)
		}
	}

	// Without the secrets the node stops at start and says how to set them.
	for _, secret := range []string{"SESSION_SECRET", "GOSSIP_KEY"} {
		env := deploytest.MachineEnv(fc, image, deploytest.Machines(fc)[0])
		delete(env, secret)
		_, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "fly secrets set") || !strings.Contains(err.Error(), secret) {
			t.Errorf("without %s: %v, want an error naming it and `fly secrets set`", secret, err)
		}
	}
}
