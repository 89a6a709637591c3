package main

// The node's flags and environment, and the cluster subcommand's.

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestFlags(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

	t.Run("-h lists every flag with its environment variable", func(t *testing.T) {
		var out bytes.Buffer
		_, err := parseConfig([]string{"-h"}, env(nil), &out)
		if err == nil {
			t.Fatal("no error for -h")
		}
		for _, want := range []string{"-http-addr", "PORT", "-data-dir", "DATA_DIR", "-db", "DATABASE_PATH", "-node", "NODE_NAME", "-region", "FLY_REGION", "-session-secret", "SESSION_SECRET"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("usage lacks %q", want)
			}
		}
	})

	t.Run("-h names the cluster subcommand and is not an error to the user; a bad flag is one line with a hint", func(t *testing.T) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), []string{"-h"}, env(nil), &stdout, &stderr)
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stdout.String(), "notesync cluster") || stderr.Len() != 0 {
			t.Errorf("-h: %v, stdout %q, stderr %q", err, stdout.String(), stderr.String())
		}
		stdout.Reset()
		err = run(context.Background(), []string{"cluster", "-h"}, env(nil), &stdout, &stderr)
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(stdout.String(), "-netns") || !strings.Contains(stdout.String(), "-lease") || !strings.Contains(stdout.String(), "promote NODE") {
			t.Errorf("cluster -h: %v, stdout %q", err, stdout.String())
		}
		for _, args := range [][]string{{"-bogus"}, {"cluster", "-bogus"}} {
			stdout.Reset()
			err := run(context.Background(), args, env(nil), &stdout, &stderr)
			if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "-bogus") || !strings.Contains(err.Error(), "-h") || stdout.Len()+stderr.Len() != 0 {
				t.Errorf("%v: %v, and printed %q %q; want one line naming the flag with a hint to -h", args, err, stdout.String(), stderr.String())
			}
		}
	})

	t.Run("an explicit -db is never overridden; without it the database lives in the LiteFS mount", func(t *testing.T) {
		c, err := parseConfig([]string{"-db", "data/notesync.db", "-litefs-dir", "/litefs"}, env(nil), &bytes.Buffer{})
		if err != nil || c.DBPath != "data/notesync.db" {
			t.Errorf("explicit -db: %q %v, want data/notesync.db", c.DBPath, err)
		}
		c, err = parseConfig([]string{"-litefs-dir", "/litefs"}, env(nil), &bytes.Buffer{})
		if err != nil || c.DBPath != "/litefs/notesync.db" {
			t.Errorf("no -db with LiteFS: %q %v, want /litefs/notesync.db", c.DBPath, err)
		}
		c, err = parseConfig([]string{"-data-dir", "/d"}, env(nil), &bytes.Buffer{})
		if err != nil || c.DBPath != "/d/notesync.db" {
			t.Errorf("no -db: %q %v, want /d/notesync.db", c.DBPath, err)
		}
	})

	t.Run("environment fills in, flags win", func(t *testing.T) {
		c, err := parseConfig([]string{"-node", "n7"}, env(map[string]string{"PORT": "9999", "NODE_NAME": "envnode", "FLY_REGION": "ams"}), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if c.HTTPAddr != ":9999" || c.Node != "n7" || c.Region != "ams" {
			t.Fatalf("%+v", c)
		}
	})

	t.Run("connection caps: 32 per user, and the node's below its open-file limit", func(t *testing.T) {
		c, err := parseConfig(nil, env(nil), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		var lim syscall.Rlimit
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
		if c.MaxConnsPerUser != 32 || c.MaxConns <= 0 || uint64(c.MaxConns) >= lim.Cur {
			t.Fatalf("caps: %d per user, %d per node (open-file limit %d)", c.MaxConnsPerUser, c.MaxConns, lim.Cur)
		}
		c, err = parseConfig([]string{"-max-conns", "500"}, env(map[string]string{"MAX_CONNS_PER_USER": "4"}), &bytes.Buffer{})
		if err != nil || c.MaxConns != 500 || c.MaxConnsPerUser != 4 {
			t.Fatalf("%v %+v", err, c)
		}
	})

	t.Run("write budget: 20 a second, burst 100, 10,000 notes and 20 MB per user; -benchmark lifts the rate and the count", func(t *testing.T) {
		c, err := parseConfig(nil, env(nil), &bytes.Buffer{})
		if err != nil || c.WriteRate != 20 || c.WriteBurst != 100 || c.MaxNotesPerUser != 10_000 || c.MaxBytesPerUser != 20_000_000 {
			t.Fatalf("defaults: %v %d/s burst %d, %d notes, %d bytes", err, c.WriteRate, c.WriteBurst, c.MaxNotesPerUser, c.MaxBytesPerUser)
		}
		c, err = parseConfig([]string{"-benchmark"}, env(nil), &bytes.Buffer{})
		if err != nil || c.WriteRate != 0 || c.MaxNotesPerUser != 0 || c.MaxBytesPerUser != 20_000_000 {
			t.Fatalf("-benchmark: %v %d/s, %d notes, %d bytes", err, c.WriteRate, c.MaxNotesPerUser, c.MaxBytesPerUser)
		}
		c, err = parseConfig([]string{"-benchmark", "-write-rate", "5"}, env(map[string]string{"MAX_NOTES_PER_USER": "7"}), &bytes.Buffer{})
		if err != nil || c.WriteRate != 5 || c.MaxNotesPerUser != 7 {
			t.Fatalf("given with -benchmark: %v %d/s, %d notes", err, c.WriteRate, c.MaxNotesPerUser)
		}
		if _, err := parseConfig([]string{"-write-burst", "0"}, env(nil), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "-write-burst") {
			t.Fatalf("a rate without a burst: %v", err)
		}
	})

	t.Run("on Fly.io it refuses to start without its secrets, saying how to set them", func(t *testing.T) {
		_, err := parseConfig(nil, env(map[string]string{"FLY_MACHINE_ID": "148e21e4b16189", "FLY_APP_NAME": "notes"}), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "fly secrets set") || !strings.Contains(err.Error(), "GOSSIP_KEY") || !strings.Contains(err.Error(), "SESSION_SECRET") {
			t.Fatalf("got %v", err)
		}
	})

	t.Run("on Fly.io the cluster settings default to the platform's", func(t *testing.T) {
		c, err := parseConfig(nil, env(map[string]string{
			"FLY_MACHINE_ID": "148e21e4b16189", "FLY_APP_NAME": "notes", "FLY_REGION": "syd",
			"FLY_PRIVATE_IP": "fdaa:0:1:a7b:1::2", "PORT": "8080",
			"SESSION_SECRET": "0123456789abcdef0123", "GOSSIP_KEY": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
		}), &bytes.Buffer{})
		if err != nil {
			t.Fatal(err)
		}
		if c.Node != "148e21e4b16189" || c.Region != "syd" || c.GossipBind != "[::]:7946" ||
			c.GossipAdvert != "[fdaa:0:1:a7b:1::2]:7946" || len(c.Peers) != 1 || c.Peers[0] != "notes.internal:7946" ||
			!c.GossipWAN || c.HTTPURL != "http://[fdaa:0:1:a7b:1::2]:8080" || len(c.GossipKey) != 32 {
			t.Fatalf("%+v", c)
		}
	})

	t.Run("a bad value stops the program with one line naming it", func(t *testing.T) {
		cases := []struct {
			args []string
			env  map[string]string
			name string
		}{
			{nil, map[string]string{"PORT": "x:y:z"}, "PORT"},
			{[]string{"-node", "bad name!"}, nil, "-node"},
			{[]string{"-region", ""}, nil, "-region"},
			{nil, map[string]string{"SESSION_SECRET": "short"}, "SESSION_SECRET"},
			{[]string{"-log-level", "loud"}, nil, "-log-level"},
			{[]string{"stray"}, nil, "stray"},
			{[]string{"-max-conns", "-1"}, nil, "-max-conns"},
			{nil, map[string]string{"MAX_CONNS_PER_USER": "lots"}, "MAX_CONNS_PER_USER"},
			{[]string{"-signup-limit", "1.5"}, nil, "-signup-limit"},
			{nil, map[string]string{"PASSWORD_PEPPER": "short"}, "PASSWORD_PEPPER"},
			{nil, map[string]string{"CLIENT_IP_HEADER": "X Real IP"}, "CLIENT_IP_HEADER"},
			{[]string{"-bcrypt-cost", "3", "-benchmark"}, nil, "-bcrypt-cost"},
			{nil, map[string]string{"BCRYPT_COST": "ten"}, "BCRYPT_COST"},
		}
		for _, c := range cases {
			_, err := parseConfig(c.args, env(c.env), &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), c.name) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%v %v: got %v, want one line naming %s", c.args, c.env, err, c.name)
			}
		}
	})

	t.Run("a bcrypt cost under 10 needs -benchmark", func(t *testing.T) {
		_, err := parseConfig([]string{"-bcrypt-cost", "4"}, env(nil), &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "-benchmark") {
			t.Fatalf("-bcrypt-cost 4 alone: got %v, want a refusal naming -benchmark", err)
		}
		for _, c := range []struct {
			args []string
			env  map[string]string
		}{
			{[]string{"-bcrypt-cost", "4", "-benchmark"}, nil},
			{nil, map[string]string{"BCRYPT_COST": "4", "BENCHMARK": "true"}},
		} {
			cfg, err := parseConfig(c.args, env(c.env), &bytes.Buffer{})
			if err != nil || cfg.BcryptCost != 4 || !cfg.Benchmark {
				t.Errorf("%v %v: got %+v, %v", c.args, c.env, cfg, err)
			}
		}
		if cfg, err := parseConfig([]string{"-bcrypt-cost", "12"}, env(nil), &bytes.Buffer{}); err != nil || cfg.BcryptCost != 12 {
			t.Errorf("-bcrypt-cost 12: got %v", err)
		}
	})
}

func TestClusterCommand(t *testing.T) {
	t.Run("without FUSE it stops at once, saying what to install", func(t *testing.T) {
		t.Setenv("PATH", t.TempDir()) // no fusermount3 to be found
		start := time.Now()
		err := run(context.Background(), []string{"cluster"}, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), "fuse3") || time.Since(start) > 2*time.Second {
			t.Fatalf("got %v after %v", err, time.Since(start))
		}
	})
	t.Run("bad -n, -base-port and -lease are refused by name", func(t *testing.T) {
		for _, args := range [][]string{{"cluster", "-n", "0"}, {"cluster", "-base-port", "70000"}, {"cluster", "-lease", "raft"}} {
			err := run(context.Background(), args, func(string) string { return "" }, &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), args[1]) {
				t.Errorf("%v: got %v", args, err)
			}
		}
	})
}
