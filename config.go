package main

// The node's configuration: defaults (Fly.io's environment among them),
// flags with environment variables, validation, and the values derived
// from the others, each a step of its own. A flag is parsed once; an
// explicit value is never overridden. Last, the secrets derived from it:
// the session secret, generated once into the data directory when none
// is given, and the password pepper.

import (
	"cmp"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// config is the node's configuration from flags and environment.
type config struct {
	HTTPAddr      string
	DataDir       string
	DBPath        string
	Node          string
	Region        string
	SessionSecret string
	// PasswordPepper keys the HMAC in front of bcrypt; empty: the session
	// secret does.
	PasswordPepper string
	LogLevel       slog.Level

	// Cluster.
	LiteFSDir      string
	LiteFSURL      string
	LiteFSHostname string
	LiteFSAdvert   string // LiteFS's API as the other nodes reach it
	GossipBind     string
	GossipAdvert   string
	Peers          []string
	GossipKey      []byte
	GossipWAN      bool
	HTTPURL        string
	PublicURL      string
	FlyMachineID   string
	PprofAddr      string
	MetricsAddr    string
	// HandoffToken, if set, is what a caller of POST /handoff on
	// MetricsAddr must send (the local cluster's launcher, for promote).
	HandoffToken string
	// WriteAck holds each write's answer until another lease candidate
	// holds it (docs/PROTOCOL.md §11); off only to measure what that costs.
	WriteAck bool
	// Candidate says whether this node's LiteFS may take the lease: as
	// litefs.yml decides, FLY_REGION equals PRIMARY_REGION.
	Candidate bool

	// Limits (docs/PROTOCOL.md §8).
	MaxConnsPerUser int
	MaxConns        int
	SignupLimit     int
	// Per user, over every node: note writes a second (and at once), and
	// what their notes may take. 0: no limit.
	WriteRate, WriteBurst            int
	MaxNotesPerUser, MaxBytesPerUser int
	// ClientIPHeader names the header in which a reverse proxy in front
	// of the node gives the client's address; empty: none is trusted.
	ClientIPHeader string

	// Assistant: an OpenAI-compatible chat-completions server;
	// empty base URL: the built-in planner. The key is never logged.
	AssistantBaseURL string
	AssistantModel   string
	AssistantAPIKey  string

	// Benchmark lowers the floor of BcryptCost below bcryptFloor: password
	// hashes made then are cheap to crack, so only a load test may ask.
	Benchmark  bool
	BcryptCost int // 0: sqlite.Store's default

	// Test hooks.
	bodyTimeout  time.Duration // default web.BodyTimeout
	writeTimeout time.Duration // default web.WriteTimeout
	ready        chan<- string // receives the listening address
}

// bcryptFloor is the lowest bcrypt cost a node accepts outside -benchmark.
const bcryptFloor = 10

var (
	nameRE       = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)
	headerNameRE = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
)

// defaults are the values a flag takes when neither it nor its
// environment variable is given.
type defaults struct {
	HTTPAddr, Region, Node          string
	GossipBind, GossipAdvert, Peers string
	GossipWAN, HTTPURL              string
	LiteFSAdvert                    string
	Fly                             bool // on Fly.io: FLY_MACHINE_ID is set
}

// envDefaults reads the defaults from the environment. On Fly.io
// (FLY_MACHINE_ID set) the cluster settings default to the platform's:
// gossip on the private IPv6 network, peers found through <app>.internal,
// WAN timings between regions.
func envDefaults(getenv func(string) string) defaults {
	d := defaults{HTTPAddr: ":8080", Region: "local", Node: "node1"}
	if p := getenv("PORT"); p != "" {
		d.HTTPAddr = ":" + p
	}
	if r := getenv("REGION"); r != "" {
		d.Region = r
	}
	if r := getenv("FLY_REGION"); r != "" {
		d.Region = r
	}
	if getenv("FLY_MACHINE_ID") == "" {
		return d
	}
	d.Fly = true
	d.Node = getenv("FLY_MACHINE_ID")
	d.GossipBind = "[::]:7946"
	if ip := getenv("FLY_PRIVATE_IP"); ip != "" {
		d.GossipAdvert = net.JoinHostPort(ip, "7946")
		port := getenv("PORT")
		if port == "" {
			port = "8080"
		}
		d.HTTPURL = "http://" + net.JoinHostPort(ip, port)
	}
	if app := getenv("FLY_APP_NAME"); app != "" {
		d.Peers = app + ".internal:7946"
		// What litefs.yml's lease.advertise-url is on Fly.
		d.LiteFSAdvert = "http://" + d.Node + ".vm." + app + ".internal:20202"
	}
	d.GossipWAN = "true"
	return d
}

// rawFlags are the flags read as text, checked into config by validate.
type rawFlags struct {
	logLevel, peers, gossipKey string
	limits, budget             func() error
}

// usageText heads `notesync -h`.
const usageText = `Usage:
  notesync [flags]           run one node (this page)
  notesync cluster [flags]   run a local cluster of nodes (notesync cluster -h)

Every flag has an environment variable, named in its line; a flag given on
the command line wins over its variable. Flags:
`

// parseConfig reads flags, with environment variables as defaults. A flag
// given on the command line wins over its variable. -h writes the usage to
// usage and returns flag.ErrHelp; any other mistake is one line that names
// the flag.
func parseConfig(args []string, getenv func(string) string, usage io.Writer) (*config, error) {
	d := envDefaults(getenv)
	fs := flag.NewFlagSet("notesync", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are returned, -h is answered below
	c := &config{FlyMachineID: getenv("FLY_MACHINE_ID")}
	raw := c.registerFlags(fs, d, getenv)
	if err := parseFlags(fs, args, usage, usageText); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (notesync -h lists the flags and subcommands)", fs.Arg(0))
	}
	if err := c.validate(raw, d); err != nil {
		return nil, err
	}
	c.derive()
	return c, nil
}

// parseFlags parses args into fs. For -h it writes head and every flag to
// usage and returns flag.ErrHelp; a bad flag is one line with a hint.
func parseFlags(fs *flag.FlagSet, args []string, usage io.Writer, head string) error {
	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(usage, head)
		fs.SetOutput(usage)
		fs.PrintDefaults()
		return flag.ErrHelp
	case err != nil:
		return fmt.Errorf("%v (%s -h lists the flags)", err, fs.Name())
	}
	return nil
}

// registerFlags defines every flag of a node on fs, with its environment
// variable and default.
func (c *config) registerFlags(fs *flag.FlagSet, d defaults, getenv func(string) string) *rawFlags {
	env := func(name, def string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return def
	}
	raw := &rawFlags{}
	fs.StringVar(&c.HTTPAddr, "http-addr", env("HTTP_ADDR", d.HTTPAddr), "HTTP listen address (env HTTP_ADDR; PORT=n gives :n)")
	fs.StringVar(&c.DataDir, "data-dir", env("DATA_DIR", "data"), "directory for the database and generated secrets (env DATA_DIR)")
	fs.StringVar(&c.DBPath, "db", env("DATABASE_PATH", ""), "SQLite database path (env DATABASE_PATH; default <data-dir>/notesync.db)")
	fs.StringVar(&c.Node, "node", env("NODE_NAME", d.Node), "this node's name (env NODE_NAME)")
	fs.StringVar(&c.Region, "region", d.Region, "this node's region (env FLY_REGION, else REGION)")
	fs.StringVar(&c.SessionSecret, "session-secret", env("SESSION_SECRET", ""), "secret that signs session cookies (env SESSION_SECRET; default: generated once into <data-dir>/session_secret)")
	fs.StringVar(&raw.logLevel, "log-level", env("LOG_LEVEL", "info"), "debug, info, warn or error (env LOG_LEVEL)")
	fs.StringVar(&c.LiteFSDir, "litefs-dir", env("LITEFS_DIR", ""), "LiteFS FUSE mount dir holding the database (env LITEFS_DIR; empty: no LiteFS)")
	fs.StringVar(&c.LiteFSURL, "litefs-url", env("LITEFS_URL", ""), "LiteFS HTTP API, whose events tell this node's role (env LITEFS_URL; default http://127.0.0.1:20202 with -litefs-dir)")
	fs.StringVar(&c.LiteFSHostname, "litefs-hostname", env("LITEFS_HOSTNAME", ""), "this node's LiteFS lease hostname, as .primary names it (env LITEFS_HOSTNAME; default: the node name)")
	fs.StringVar(&c.LiteFSAdvert, "litefs-advertise-url", env("LITEFS_ADVERTISE_URL", d.LiteFSAdvert), "LiteFS's HTTP API as the other nodes reach it, where a stopping primary asks its successor to take the lease (env LITEFS_ADVERTISE_URL; on Fly.io http://<machine>.vm.<app>.internal:20202; empty: this node is never handed the lease on a stop)")
	fs.StringVar(&c.GossipBind, "gossip-bind", env("GOSSIP_BIND", d.GossipBind), "memberlist bind address host:port (env GOSSIP_BIND; empty: no cluster)")
	fs.StringVar(&c.GossipAdvert, "gossip-advertise", env("GOSSIP_ADVERTISE", d.GossipAdvert), "memberlist address other nodes use (env GOSSIP_ADVERTISE; default: the bind address)")
	fs.StringVar(&raw.peers, "peers", env("PEERS", d.Peers), "comma-separated peer gossip addresses or a DNS name resolving to all peers (env PEERS)")
	fs.StringVar(&raw.gossipKey, "gossip-key", env("GOSSIP_KEY", ""), "base64 gossip encryption key of 16, 24 or 32 bytes (env GOSSIP_KEY)")
	fs.BoolVar(&c.GossipWAN, "gossip-wan", env("GOSSIP_WAN", d.GossipWAN) == "true", "gossip timings for links between regions (env GOSSIP_WAN=true)")
	fs.StringVar(&c.HTTPURL, "http-url", env("HTTP_URL", d.HTTPURL), "URL other nodes reach this node's HTTP server at (env HTTP_URL; default: from -http-addr)")
	fs.StringVar(&c.PublicURL, "public-url", env("PUBLIC_URL", ""), "URL browsers reach this node at, for the cluster panel's links, when not -http-url (env PUBLIC_URL)")
	fs.StringVar(&c.PprofAddr, "pprof-addr", env("PPROF_ADDR", ""), "serve net/http/pprof on this address, for profiling (env PPROF_ADDR; keep it on loopback)")
	fs.StringVar(&c.HandoffToken, "handoff-token", env("HANDOFF_TOKEN", ""), "serve POST /handoff?to=NODE on -metrics-addr to callers that send this as a bearer token: the primary hands its lease to NODE, holding writes as on a stop (env HANDOFF_TOKEN; set by `cluster`; empty: not served; never logged)")
	fs.BoolVar(&c.WriteAck, "write-ack", env("WRITE_ACK", "true") != "false", "answer a write only once another live lease candidate holds it (env WRITE_ACK=false turns it off; only to measure what it costs)")
	c.Candidate = getenv("FLY_REGION") == getenv("PRIMARY_REGION")
	fs.StringVar(&c.AssistantBaseURL, "assistant-base-url", env("ASSISTANT_BASE_URL", ""), "OpenAI-compatible chat-completions base URL for the Assistant, e.g. https://api.openai.com/v1 (env ASSISTANT_BASE_URL; empty: the built-in planner)")
	fs.StringVar(&c.AssistantModel, "assistant-model", env("ASSISTANT_MODEL", ""), "model name sent to the Assistant's server (env ASSISTANT_MODEL)")
	fs.StringVar(&c.AssistantAPIKey, "assistant-api-key", env("ASSISTANT_API_KEY", ""), "API key of the Assistant's server (env ASSISTANT_API_KEY; never logged)")
	raw.limits = c.limitFlags(fs, env)
	raw.budget = c.budgetFlags(fs, env)
	fs.IntVar(&c.BcryptCost, "bcrypt-cost", envInt(getenv, "BCRYPT_COST"), "bcrypt cost of new password hashes (env BCRYPT_COST; default 10; below 10 only with -benchmark)")
	fs.BoolVar(&c.Benchmark, "benchmark", env("BENCHMARK", "") == "true", "this node serves a load test: allows -bcrypt-cost below 10 and serves POST /debug/publish on -metrics-addr (env BENCHMARK=true; never in production)")
	return raw
}

// validate checks the parsed flags, and reads those given as text.
func (c *config) validate(raw *rawFlags, d defaults) error {
	if _, port, err := net.SplitHostPort(c.HTTPAddr); err != nil || port == "" {
		return fmt.Errorf("invalid -http-addr (HTTP_ADDR/PORT) %q: want host:port or :port", c.HTTPAddr)
	}
	if !nameRE.MatchString(c.Node) {
		return fmt.Errorf("invalid -node (NODE_NAME) %q: letters, digits, '.', '_' and '-', up to 63", c.Node)
	}
	if !nameRE.MatchString(c.Region) {
		return fmt.Errorf("invalid -region (FLY_REGION/REGION) %q", c.Region)
	}
	if c.DataDir == "" {
		return errors.New("invalid -data-dir (DATA_DIR): must not be empty")
	}
	if err := c.validateSecrets(raw, d); err != nil {
		return err
	}
	level, err := parseLevel(raw.logLevel)
	if err != nil {
		return err
	}
	c.LogLevel = level
	if err := errors.Join(raw.limits(), raw.budget()); err != nil {
		return err
	}
	if err := checkBcryptCost(c.BcryptCost, c.Benchmark); err != nil {
		return err
	}
	if err := c.validateGossip(raw); err != nil {
		return err
	}
	return c.validateURLs()
}

// validateSecrets checks the session secret and reads the gossip key.
func (c *config) validateSecrets(raw *rawFlags, d defaults) error {
	if d.Fly && (c.SessionSecret == "" || raw.gossipKey == "") {
		return errors.New("missing SESSION_SECRET or GOSSIP_KEY on Fly.io: fly secrets set SESSION_SECRET=$(openssl rand -hex 32) GOSSIP_KEY=$(openssl rand -base64 32)")
	}
	if c.GossipBind != "" && c.SessionSecret == "" {
		return errors.New("missing -session-secret (SESSION_SECRET): every node of a cluster must share one (openssl rand -hex 32)")
	}
	if c.SessionSecret != "" && len(c.SessionSecret) < 16 {
		return errors.New("invalid -session-secret (SESSION_SECRET): use at least 16 characters (32 random bytes advised)")
	}
	if raw.gossipKey != "" {
		k, err := base64.StdEncoding.DecodeString(raw.gossipKey)
		if err != nil || (len(k) != 16 && len(k) != 24 && len(k) != 32) {
			return errors.New("invalid -gossip-key (GOSSIP_KEY): want base64 of 16, 24 or 32 bytes (openssl rand -base64 32)")
		}
		c.GossipKey = k
	}
	return nil
}

// validateGossip checks the gossip addresses and reads the peers.
func (c *config) validateGossip(raw *rawFlags) error {
	for _, p := range strings.Split(raw.peers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			c.Peers = append(c.Peers, p)
		}
	}
	if len(c.Peers) > 0 && c.GossipBind == "" {
		return errors.New("invalid -peers (PEERS): set -gossip-bind (GOSSIP_BIND) too")
	}
	if c.GossipBind != "" {
		if _, _, err := net.SplitHostPort(c.GossipBind); err != nil {
			return fmt.Errorf("invalid -gossip-bind (GOSSIP_BIND) %q: want host:port", c.GossipBind)
		}
	}
	if c.GossipAdvert != "" {
		if _, _, err := net.SplitHostPort(c.GossipAdvert); err != nil {
			return fmt.Errorf("invalid -gossip-advertise (GOSSIP_ADVERTISE) %q: want host:port", c.GossipAdvert)
		}
	}
	return nil
}

// validateURLs checks the URLs a node is given.
func (c *config) validateURLs() error {
	if c.HTTPURL != "" {
		if u, err := url.Parse(c.HTTPURL); err != nil || u.Scheme == "" || u.Host == "" {
			return fmt.Errorf("invalid -http-url (HTTP_URL) %q: want http://host:port", c.HTTPURL)
		}
	}
	if c.LiteFSAdvert != "" {
		if u, err := url.Parse(c.LiteFSAdvert); err != nil || u.Scheme != "http" || u.Host == "" {
			return fmt.Errorf("invalid -litefs-advertise-url (LITEFS_ADVERTISE_URL) %q: want http://host:port", c.LiteFSAdvert)
		}
	}
	if c.PublicURL != "" {
		if u, err := url.Parse(c.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("invalid -public-url (PUBLIC_URL) %q: want http(s)://host[:port]", c.PublicURL)
		}
	}
	if c.AssistantBaseURL != "" {
		if u, err := url.Parse(c.AssistantBaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("invalid -assistant-base-url (ASSISTANT_BASE_URL) %q: want http(s)://host[:port]/path", c.AssistantBaseURL)
		}
	}
	return nil
}

// derive fills in the values that default to others.
func (c *config) derive() {
	if c.DBPath == "" { // in the LiteFS mount when there is one
		c.DBPath = filepath.Join(cmp.Or(c.LiteFSDir, c.DataDir), "notesync.db")
	}
	if c.LiteFSHostname == "" {
		c.LiteFSHostname = c.Node
	}
	if c.LiteFSDir != "" && c.LiteFSURL == "" {
		c.LiteFSURL = "http://127.0.0.1:20202"
	}
}

// limitFlags defines on fs the flags of what a node allows its clients
// (docs/PROTOCOL.md §8) and of what it keeps from them: connection caps,
// the sign-up limit, the trusted client-address header, the password
// pepper and the metrics address. The returned func checks their values
// into c once fs is parsed.
func (c *config) limitFlags(fs *flag.FlagSet, env func(name, def string) string) func() error {
	maxUser := fs.String("max-conns-per-user", env("MAX_CONNS_PER_USER", "32"), "real-time connections one user may hold on this node; the next is refused (env MAX_CONNS_PER_USER; 0: no cap)")
	maxConns := fs.String("max-conns", env("MAX_CONNS", strconv.Itoa(defaultMaxConns())), "real-time connections this node holds at most; the next gets 503 (env MAX_CONNS; default: the open-file limit less a tenth; 0: no cap)")
	signups := fs.String("signup-limit", env("SIGNUP_LIMIT", "20"), "sign-ups one client address may make per hour (env SIGNUP_LIMIT; 0: no limit)")
	fs.StringVar(&c.ClientIPHeader, "client-ip-header", env("CLIENT_IP_HEADER", ""), "header in which the reverse proxy in front of every request gives the client's address, e.g. X-Real-IP or X-Forwarded-For (env CLIENT_IP_HEADER; empty: trust none; on Fly.io Fly-Client-IP is used)")
	fs.StringVar(&c.PasswordPepper, "password-pepper", env("PASSWORD_PEPPER", ""), "secret mixed into every password hash; every node must share it, and changing it makes every password fail (env PASSWORD_PEPPER; default: the session secret)")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", env("METRICS_ADDR", ""), "serve Prometheus metrics at /metrics on this address, apart from the public port (env METRICS_ADDR; empty: not served)")
	return func() error {
		var err error
		if c.MaxConnsPerUser, err = parseCount(*maxUser, "-max-conns-per-user (MAX_CONNS_PER_USER)"); err != nil {
			return err
		}
		if c.MaxConns, err = parseCount(*maxConns, "-max-conns (MAX_CONNS)"); err != nil {
			return err
		}
		if c.SignupLimit, err = parseCount(*signups, "-signup-limit (SIGNUP_LIMIT)"); err != nil {
			return err
		}
		if h := c.ClientIPHeader; h != "" && !headerNameRE.MatchString(h) {
			return fmt.Errorf("invalid -client-ip-header (CLIENT_IP_HEADER) %q: want a header name such as X-Real-IP", h)
		}
		if c.PasswordPepper != "" && len(c.PasswordPepper) < 16 {
			return errors.New("invalid -password-pepper (PASSWORD_PEPPER): use at least 16 characters (32 random bytes advised)")
		}
		if c.MetricsAddr != "" {
			if _, port, err := net.SplitHostPort(c.MetricsAddr); err != nil || port == "" {
				return fmt.Errorf("invalid -metrics-addr (METRICS_ADDR) %q: want host:port or :port", c.MetricsAddr)
			}
		}
		return nil
	}
}

// parseCount reads a non-negative whole number given to flag.
func parseCount(s, flag string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 0 {
		return 0, fmt.Errorf("invalid %s %q: want a whole number, 0 or more", flag, s)
	}
	return n, nil
}

// defaultMaxConns is the node's default cap on real-time connections: the
// process's open-file limit less a tenth (at least 100), which is left to
// the database, the listeners and short requests. Go raises the soft limit
// to the hard one at start, so this is the limit the node runs with.
func defaultMaxConns() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	n := min(lim.Cur, 1<<24)
	keep := max(n/10, 100)
	if n <= 2*keep {
		return int(n / 2)
	}
	return int(n - keep)
}

// envInt reads an integer variable; a malformed one reads as -1, which the
// flag's own check then refuses with the flag's name.
func envInt(getenv func(string) string, name string) int {
	v := getenv(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		return -1
	}
	return n
}

// checkBcryptCost refuses a cost that bcrypt does not take, and one under
// bcryptFloor unless the node is told it serves a benchmark.
func checkBcryptCost(cost int, benchmark bool) error {
	switch {
	case cost == 0:
		return nil
	case cost < bcrypt.MinCost || cost > bcrypt.MaxCost:
		return fmt.Errorf("invalid -bcrypt-cost (BCRYPT_COST) %d: want %d to %d", cost, bcrypt.MinCost, bcrypt.MaxCost)
	case cost < bcryptFloor && !benchmark:
		return fmt.Errorf("refusing -bcrypt-cost (BCRYPT_COST) %d: under %d password hashes are cheap to crack; only a load test may lower it, with -benchmark (BENCHMARK=true)", cost, bcryptFloor)
	}
	return nil
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("invalid -log-level (LOG_LEVEL) %q: want debug, info, warn or error", s)
	}
	return l, nil
}
