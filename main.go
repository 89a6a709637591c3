// Command notesync is a notes web app whose every open tab stays in sync in
// real time, on one node or on a cluster of identical nodes.
//
//	go run .            one node on :8080, data in ./data
//	go run . -h         every flag and its environment variable
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"notesync/cluster/local"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	switch {
	case errors.Is(err, flag.ErrHelp): // the usage, as asked for
	case err != nil:
		fmt.Fprintln(os.Stderr, "notesync:", err)
		os.Exit(2)
	}
}

// run starts one node and serves until ctx ends.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "cluster" {
		return runCluster(ctx, args[1:], getenv, os.Stdin, stdout, stderr)
	}
	cfg, err := parseConfig(args, getenv, stdout)
	if err != nil {
		return err
	}
	return serve(ctx, cfg, stdout, stderr)
}

// runCluster is `notesync cluster`: a local cluster of N nodes, each under
// its own LiteFS mount, until ctx ends. The primary moves under the
// launcher's Consul lease unless -lease static; stdin takes commands
// (kill, stop, promote, status) and, with -netns, where each node has a
// network of its own, fault commands (docs/PROTOCOL.md §10, §11).
func runCluster(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("notesync cluster", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, -h is answered by parseFlags
	n := fs.Int("n", 3, "number of nodes")
	basePort := fs.Int("base-port", 8081, "HTTP port of node1; node i uses base-port+i-1 (LiteFS +100, gossip +200, metrics +300)")
	dir := fs.String("dir", filepath.Join("data", "cluster"), "state of every node")
	config := fs.String("config", "litefs.yml", "LiteFS configuration")
	host := fs.String("host", "127.0.0.1", "loopback address the nodes are reached at")
	netns := fs.Bool("netns", false, "run each node in a network namespace of its own (10.77.0.i; Linux, root); stdin then also takes fault commands: "+local.FaultCommands)
	leaseKind := fs.String("lease", local.LeaseConsul, "the LiteFS lease: consul (every node a candidate, node1 the first primary; the primary moves) or static (node1 primary for good)")
	const head = "Usage: notesync cluster [flags]\n\nRuns a local cluster under real LiteFS mounts (node1 primary at start). Its standard input takes " + local.NodeCommands + ". Flags:\n"
	if err := parseFlags(fs, args, stdout, head); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (notesync cluster -h lists the flags)", fs.Arg(0))
	}
	if *n < 1 || *n > 50 {
		return fmt.Errorf("invalid -n %d: want 1 to 50", *n)
	}
	if *basePort < 1 || *basePort+300+*n > 65535 {
		return fmt.Errorf("invalid -base-port %d", *basePort)
	}
	if ip := net.ParseIP(*host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("invalid -host %q: want a loopback address such as 127.0.0.1", *host)
	}
	if *leaseKind != local.LeaseConsul && *leaseKind != local.LeaseStatic {
		return fmt.Errorf("invalid -lease %q: want %s or %s", *leaseKind, local.LeaseConsul, local.LeaseStatic)
	}
	if *netns {
		if err := local.CheckNetns(); err != nil {
			return err
		}
	}
	if err := local.CheckFUSE(); err != nil {
		return err
	}
	cfgPath, err := filepath.Abs(*config)
	if err != nil {
		return err
	}
	if _, err := os.Stat(cfgPath); err != nil {
		return fmt.Errorf("invalid -config: %w (run from the repository root)", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	litefs, err := local.LiteFSBinary(getenv("LITEFS_BIN"))
	if err != nil {
		return err
	}
	l := &local.Launcher{
		N: *n, BasePort: *basePort, Host: *host, Dir: *dir, Netns: *netns, Lease: *leaseKind, Exe: exe, LiteFS: litefs, Config: cfgPath,
		Input: stdin, Stdout: stdout, Logger: slog.New(slog.NewTextHandler(stderr, nil)),
	}
	if err := l.Open(ctx); err != nil {
		return err
	}
	defer l.Close()
	l.Run(ctx)
	return nil
}
