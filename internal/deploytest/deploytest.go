// Package deploytest reads the files the Fly.io image is made of (the
// Dockerfile, fly.toml, litefs.yml) the way Docker, flyctl and LiteFS read
// them, and describes the machines Fly runs the image on: what the tests
// of the deploy (e2e) and of the node's configuration on a machine
// (package main) share. Only test code imports it.
package deploytest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"notesync/internal/localcluster"
)

// Path is the file name of the module's root directory.
func Path(t testing.TB, name string) string {
	t.Helper()
	root, err := localcluster.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, name)
}

// RuntimeVars are the variables Fly.io sets on every machine
// (https://fly.io/docs/machines/runtime-environment/); PRIMARY_REGION comes
// from fly.toml's primary_region.
var RuntimeVars = []string{
	"FLY_APP_NAME", "FLY_MACHINE_ID", "FLY_ALLOC_ID", "FLY_REGION", "FLY_PUBLIC_IP",
	"FLY_IMAGE_REF", "FLY_MACHINE_VERSION", "FLY_PRIVATE_IP", "FLY_PROCESS_GROUP",
	"FLY_VM_MEMORY_MB", "PRIMARY_REGION",
}

// Secrets are set by the deployer, as docs/DEPLOY.md says:
// FLY_CONSUL_URL by `fly consul attach`, the others by `fly secrets set`.
var Secrets = []string{"FLY_CONSUL_URL", "SESSION_SECRET", "GOSSIP_KEY"}

// Machine is what Fly gives one machine.
type Machine struct {
	ID, Region, PrivateIP string
}

// Machines are three machines: two in the primary region (the lease
// candidates), one elsewhere.
func Machines(fc *FlyConfig) []Machine {
	other := "syd"
	if fc.PrimaryRegion == other {
		other = "ord"
	}
	return []Machine{
		{ID: "148e21ea7e4389", Region: fc.PrimaryRegion, PrivateIP: "fdaa:0:1a2b:a7b:1f4:8d3c:1e2f:2"},
		{ID: "e784079b449483", Region: fc.PrimaryRegion, PrivateIP: "fdaa:0:1a2b:a7b:2c1:5a0e:77b1:2"},
		{ID: "3d8d9e1bd21589", Region: other, PrivateIP: "fdaa:0:1a2b:a7b:9e:41c2:b3a4:2"},
	}
}

// MachineEnv is the environment of a machine: the image's ENV, fly.toml's
// [env], what Fly sets, and the secrets docs/DEPLOY.md has the deployer set.
func MachineEnv(fc *FlyConfig, image map[string]string, m Machine) map[string]string {
	env := map[string]string{}
	for k, v := range image {
		env[k] = v
	}
	for k, v := range fc.Env {
		env[k] = v
	}
	env["FLY_APP_NAME"] = fc.App
	env["FLY_MACHINE_ID"], env["FLY_ALLOC_ID"] = m.ID, m.ID
	env["FLY_REGION"] = m.Region
	env["FLY_PRIVATE_IP"] = m.PrivateIP
	env["FLY_PROCESS_GROUP"] = "app"
	env["PRIMARY_REGION"] = fc.PrimaryRegion
	env["FLY_CONSUL_URL"] = "https://:consul-token@consul-fra-2.fly-shared.net/" + fc.App + "-1a2b3c4d/"
	env["SESSION_SECRET"] = strings.Repeat("5e", 32)
	env["GOSSIP_KEY"] = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	return env
}

// ExecArgs is the command line of litefs.yml's (last) exec entry,
// expanded with env. The entry uses plain ${VAR}s, which LiteFS expands as
// os.Expand does, and LiteFS splits it into words with go-shellwords;
// TestLiteFSConfigOnFly (e2e) runs the real thing.
func ExecArgs(t testing.TB, env map[string]string) []string {
	t.Helper()
	var lf struct {
		Exec []struct {
			Cmd string `yaml:"cmd"`
		} `yaml:"exec"`
	}
	b, err := os.ReadFile(Path(t, "litefs.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &lf); err != nil {
		t.Fatalf("litefs.yml: %v", err)
	}
	if len(lf.Exec) == 0 {
		t.Fatal("litefs.yml has no exec: LiteFS would not start the app")
	}
	args := Words(t, os.Expand(lf.Exec[len(lf.Exec)-1].Cmd, func(k string) string { return env[k] }))
	if len(args) == 0 {
		t.Fatalf("litefs.yml's exec expands to nothing")
	}
	return args
}
