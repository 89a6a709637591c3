package main

// Tests of what the Fly.io image runs. The image cannot be built here (no
// Docker engine), so these tests read the Dockerfile, .dockerignore,
// fly.toml and litefs.yml the way Docker, flyctl and LiteFS do, cross-check
// them, and run what the image runs: the real LiteFS binary (the version
// go.mod pins) with the repository's litefs.yml, the image's environment and
// a Consul lease served by a stand-in Consul; and the node's own flag parser
// with the environment a machine gets.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"gopkg.in/yaml.v3"

	"notesync/cluster/local"
	"notesync/internal/testenv"
)

// flyRuntimeVars are the variables Fly.io sets on every machine
// (https://fly.io/docs/machines/runtime-environment/); PRIMARY_REGION comes
// from fly.toml's primary_region.
var flyRuntimeVars = []string{
	"FLY_APP_NAME", "FLY_MACHINE_ID", "FLY_ALLOC_ID", "FLY_REGION", "FLY_PUBLIC_IP",
	"FLY_IMAGE_REF", "FLY_MACHINE_VERSION", "FLY_PRIVATE_IP", "FLY_PROCESS_GROUP",
	"FLY_VM_MEMORY_MB", "PRIMARY_REGION",
}

// deploySecrets are set by the deployer, as docs/DEPLOY.md says:
// FLY_CONSUL_URL by `fly consul attach`, the others by `fly secrets set`.
var deploySecrets = []string{"FLY_CONSUL_URL", "SESSION_SECRET", "GOSSIP_KEY"}

// ---------------------------------------------------------------- Dockerfile

type dockerInstr struct {
	Cmd  string // upper case: FROM, RUN, COPY, ENV, ...
	Args string // the rest, continuation lines joined
	Line int
}

type dockerStage struct {
	Image, Name string
	Instrs      []dockerInstr
}

// parseDockerfile splits a Dockerfile into stages of instructions, joining
// continuation lines and dropping comments as Docker does.
func parseDockerfile(t *testing.T, file string) []dockerStage {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var instrs []dockerInstr
	var cur strings.Builder
	start := 0
	for i, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue // comments, also inside a continued instruction
		}
		if cur.Len() == 0 {
			start = i + 1
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			continue
		}
		cmd, args, _ := strings.Cut(text, " ")
		instrs = append(instrs, dockerInstr{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start})
	}
	var stages []dockerStage
	for _, in := range instrs {
		if in.Cmd == "FROM" {
			f := nonFlagFields(in.Args)
			st := dockerStage{Image: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.Name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile:%d: %s before FROM", in.Line, in.Cmd)
		}
		stages[len(stages)-1].Instrs = append(stages[len(stages)-1].Instrs, in)
	}
	return stages
}

// nonFlagFields returns the words of args that are not --flags.
func nonFlagFields(args string) []string {
	var out []string
	for _, f := range shellFields(args) {
		if !strings.HasPrefix(f, "--") {
			out = append(out, f)
		}
	}
	return out
}

// flagValue returns the value of --name=value among args, if present.
func flagValue(args, name string) (string, bool) {
	for _, f := range shellFields(args) {
		if v, ok := strings.CutPrefix(f, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// shellFields splits s into words as a POSIX shell does for quoting and
// escaping (no expansion): quotes are removed, "" gives an empty word.
func shellFields(s string) []string {
	var out []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && i+1 < len(s):
			i++
			w.WriteByte(s[i])
			inWord = true
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				j = len(s) - i - 1
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte(`"\$`+"`", s[i+1]) >= 0 {
					i++
				}
				w.WriteByte(s[i])
			}
			inWord = true
		case c == ' ' || c == '\t' || c == '\n':
			if inWord {
				out = append(out, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, w.String())
	}
	return out
}

// env returns what the stage's ENV instructions set.
func (st dockerStage) env() map[string]string {
	env := map[string]string{}
	for _, in := range st.Instrs {
		if in.Cmd != "ENV" {
			continue
		}
		f := shellFields(in.Args)
		if len(f) > 0 && !strings.Contains(f[0], "=") { // legacy ENV key value
			env[f[0]] = strings.Join(f[1:], " ")
			continue
		}
		for _, kv := range f {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	return env
}

func (st dockerStage) all(cmd string) []dockerInstr {
	var out []dockerInstr
	for _, in := range st.Instrs {
		if in.Cmd == cmd {
			out = append(out, in)
		}
	}
	return out
}

// copies maps each COPY destination to its source, "stage:path" for
// COPY --from=stage.
func (st dockerStage) copies() map[string]string {
	out := map[string]string{}
	for _, in := range st.all("COPY") {
		f := nonFlagFields(in.Args)
		src := strings.Join(f[:len(f)-1], " ")
		if from, ok := flagValue(in.Args, "from"); ok {
			src = from + ":" + src
		}
		out[f[len(f)-1]] = src
	}
	return out
}

// ------------------------------------------------------------------ fly.toml

type flyCheck struct {
	Type        string `toml:"type"`
	Port        int    `toml:"port"`
	Method      string `toml:"method"`
	Path        string `toml:"path"`
	GracePeriod string `toml:"grace_period"`
	Interval    string `toml:"interval"`
	Timeout     string `toml:"timeout"`
}

type flyConfig struct {
	App           string `toml:"app"`
	PrimaryRegion string `toml:"primary_region"`
	KillSignal    string `toml:"kill_signal"`
	KillTimeout   any    `toml:"kill_timeout"` // "30s", or a number of seconds
	Build         struct {
		Dockerfile string `toml:"dockerfile"`
	} `toml:"build"`
	Deploy struct {
		Strategy       string  `toml:"strategy"`
		MaxUnavailable float64 `toml:"max_unavailable"`
	} `toml:"deploy"`
	Env    map[string]string `toml:"env"`
	Mounts struct {
		Source      string `toml:"source"`
		Destination string `toml:"destination"`
		InitialSize string `toml:"initial_size"`
	} `toml:"mounts"`
	HTTPService struct {
		InternalPort       int      `toml:"internal_port"`
		ForceHTTPS         bool     `toml:"force_https"`
		AutoStopMachines   any      `toml:"auto_stop_machines"` // "off"|"stop"|"suspend", or a bool
		AutoStartMachines  *bool    `toml:"auto_start_machines"`
		MinMachinesRunning int      `toml:"min_machines_running"`
		Processes          []string `toml:"processes"`
		Concurrency        struct {
			Type      string `toml:"type"`
			SoftLimit int    `toml:"soft_limit"`
			HardLimit int    `toml:"hard_limit"`
		} `toml:"concurrency"`
		Checks []flyCheck `toml:"checks"`
	} `toml:"http_service"`
	Checks  map[string]flyCheck `toml:"checks"`
	Metrics struct {
		Port int    `toml:"port"`
		Path string `toml:"path"`
	} `toml:"metrics"`
	VM []struct {
		Size    string `toml:"size"`
		Memory  string `toml:"memory"`
		CPUs    int    `toml:"cpus"`
		CPUKind string `toml:"cpu_kind"`
	} `toml:"vm"`
}

// readFlyTOML decodes fly.toml; a key this struct does not know is an error,
// so a misspelt setting (which flyctl would not apply) fails here.
func readFlyTOML(t *testing.T) *flyConfig {
	t.Helper()
	var fc flyConfig
	md, err := toml.DecodeFile("fly.toml", &fc)
	if err != nil {
		t.Fatalf("fly.toml: %v", err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Fatalf("fly.toml: keys this test does not know (misspelt?): %v", u)
	}
	return &fc
}

func mustDuration(t *testing.T, what string, v any) time.Duration {
	t.Helper()
	switch v := v.(type) {
	case int64:
		return time.Duration(v) * time.Second
	case string:
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return d
	}
	t.Fatalf("%s: %v (%T) is neither a duration nor seconds", what, v, v)
	return 0
}

// ----------------------------------------------------------------- litefs.yml

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
	b, err := os.ReadFile("litefs.yml")
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

// -------------------------------------------------------------------- go.mod

type goMod struct {
	GoVersion string
	Tools     []string
	Requires  map[string]string
}

func readGoMod(t *testing.T) goMod {
	t.Helper()
	b, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := goMod{Requires: map[string]string{}}
	block := ""
	for _, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "//")
		f := strings.Fields(line)
		switch {
		case len(f) == 0:
		case f[0] == ")":
			block = ""
		case len(f) == 2 && f[1] == "(":
			block = f[0]
		case block == "require" && len(f) >= 2:
			m.Requires[f[0]] = f[1]
		case block == "tool":
			m.Tools = append(m.Tools, f[0])
		case f[0] == "go" && len(f) == 2:
			m.GoVersion = f[1]
		case f[0] == "tool" && len(f) == 2:
			m.Tools = append(m.Tools, f[1])
		case f[0] == "require" && len(f) >= 3:
			m.Requires[f[1]] = f[2]
		}
	}
	return m
}

// litefsTool is the LiteFS command go.mod's tool line pins.
func litefsTool(t *testing.T, m goMod) string {
	t.Helper()
	for _, tool := range m.Tools {
		if path.Base(tool) == "litefs" {
			return tool
		}
	}
	t.Fatalf("go.mod has no tool line for LiteFS (tools: %v)", m.Tools)
	return ""
}

func majorMinor(t *testing.T, v string) (int, int) {
	t.Helper()
	f := strings.SplitN(v, ".", 3)
	if len(f) < 2 {
		t.Fatalf("version %q: want major.minor", v)
	}
	a, err1 := strconv.Atoi(f[0])
	b, err2 := strconv.Atoi(strings.TrimRightFunc(f[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		t.Fatalf("version %q: want major.minor", v)
	}
	return a, b
}

// ------------------------------------------------------------------- tests

func TestDockerfileBuildsAppAndPinnedLiteFS(t *testing.T) {
	stages := parseDockerfile(t, "Dockerfile")
	if len(stages) < 2 {
		t.Fatalf("want a multi-stage Dockerfile, got %d stage(s)", len(stages))
	}
	mod := readGoMod(t)
	build := stages[0]
	if build.Name == "" {
		t.Fatalf("build stage %q has no name (FROM ... AS build)", build.Image)
	}

	// The build image's Go is at least go.mod's, so no toolchain download.
	img, tag, _ := strings.Cut(build.Image, ":")
	if img != "golang" || !strings.HasSuffix(tag, "-bookworm") {
		t.Errorf("build stage FROM %s: want golang:<version>-bookworm", build.Image)
	}
	wantMaj, wantMin := majorMinor(t, mod.GoVersion)
	if maj, min := majorMinor(t, strings.TrimSuffix(tag, "-bookworm")); maj < wantMaj || maj == wantMaj && min < wantMin {
		t.Errorf("build stage FROM %s is older than go.mod's go %s", build.Image, mod.GoVersion)
	}

	var appBuild, litefsBuild *dockerInstr
	tool := litefsTool(t, mod)
	for i, in := range build.all("RUN") {
		switch {
		case strings.Contains(in.Args, "go build") && strings.Contains(in.Args, tool):
			litefsBuild = &build.all("RUN")[i]
		case strings.Contains(in.Args, "go build") && strings.Contains(in.Args, "-o /out/notesync"):
			appBuild = &build.all("RUN")[i]
		}
	}
	if appBuild == nil {
		t.Fatal("no RUN in the build stage builds the app (go build ... -o /out/notesync .)")
	}
	if !strings.Contains(appBuild.Args, "CGO_ENABLED=1") || !strings.HasSuffix(strings.TrimSpace(appBuild.Args), " .") {
		t.Errorf("Dockerfile:%d: the app needs cgo (go-sqlite3) and is the module's main package: %s", appBuild.Line, appBuild.Args)
	}
	if litefsBuild == nil {
		t.Fatalf("no RUN in the build stage builds LiteFS from the module (go build ... %s)", tool)
	}
	if !strings.Contains(litefsBuild.Args, "-o /out/litefs ") {
		t.Errorf("Dockerfile:%d: LiteFS is not built to /out/litefs, which the runtime stage copies", litefsBuild.Line)
	}
	if v, ok := mod.Requires["github.com/superfly/litefs"]; !ok || v == "" {
		t.Errorf("go.mod does not pin github.com/superfly/litefs")
	}
	goCmd := regexp.MustCompile(`\bgo (build|mod|list|install|get)\b`)
	for _, in := range build.all("RUN") {
		if goCmd.MatchString(in.Args) && !strings.Contains(in.Args, "target=/go/pkg/mod") {
			t.Errorf("Dockerfile:%d: a go command without the module cache mount: %s", in.Line, in.Args)
		}
	}

	// Nothing prebuilt is downloaded: LiteFS comes from go.sum-verified
	// source, the rest from Debian's packages.
	stageNames := map[string]bool{}
	for _, st := range stages {
		if !strings.HasPrefix(st.Image, "golang:") && !strings.HasPrefix(st.Image, "debian:") {
			t.Errorf("FROM %s: only the Go and Debian images are used", st.Image)
		}
		for _, in := range st.Instrs {
			switch in.Cmd {
			case "ADD":
				t.Errorf("Dockerfile:%d: ADD (COPY from the context or a stage instead)", in.Line)
			case "RUN":
				low := strings.ToLower(in.Args)
				for _, bad := range []string{"curl ", "wget ", "go install", "go get", "http://", "https://"} {
					if strings.Contains(low, bad) {
						t.Errorf("Dockerfile:%d: RUN %s: fetches something outside go.mod and apt (%q)", in.Line, in.Args, bad)
					}
				}
			case "COPY":
				if from, ok := flagValue(in.Args, "from"); ok && !stageNames[from] {
					t.Errorf("Dockerfile:%d: COPY --from=%s is not an earlier stage (an image pulled at build time)", in.Line, from)
				}
			}
		}
		if st.Name != "" {
			stageNames[st.Name] = true
		}
	}
}

func TestDockerfileRuntimeStage(t *testing.T) {
	stages := parseDockerfile(t, "Dockerfile")
	build, runtime := stages[0], stages[len(stages)-1]
	env := runtime.env()

	// The app is linked against the build stage's glibc: same Debian release.
	if runtime.Image != "debian:bookworm-slim" {
		t.Errorf("runtime stage FROM %s: want debian:bookworm-slim (the build stage is %s)", runtime.Image, build.Image)
	}
	if strings.HasPrefix(runtime.Image, "golang") {
		t.Errorf("runtime stage is a Go toolchain image")
	}

	var pkgs []string
	for _, in := range runtime.all("RUN") {
		for _, part := range regexp.MustCompile(`&&|;`).Split(in.Args, -1) {
			f := strings.Fields(part)
			i := slices.Index(f, "install")
			if i < 1 || f[i-1] != "apt-get" {
				continue
			}
			if !slices.Contains(f, "--no-install-recommends") {
				t.Errorf("Dockerfile:%d: apt-get install without --no-install-recommends", in.Line)
			}
			for _, p := range f[i+1:] {
				if !strings.HasPrefix(p, "-") {
					pkgs = append(pkgs, p)
				}
			}
		}
		if strings.Contains(in.Args, "apt-get install") && !strings.Contains(in.Args, "rm -rf /var/lib/apt/lists") {
			t.Errorf("Dockerfile:%d: apt lists are left in the image", in.Line)
		}
	}
	sort.Strings(pkgs)
	if want := []string{"ca-certificates", "fuse3", "sqlite3"}; !slices.Equal(pkgs, want) {
		t.Errorf("runtime packages %v, want exactly %v (no build tools in the image)", pkgs, want)
	}

	copies := runtime.copies()
	if src := copies[env["NOTESYNC_CMD"]]; src != build.Name+":/out/notesync" {
		t.Errorf("NOTESYNC_CMD=%q, the command litefs.yml's exec runs, is not the app built in %q (COPY sources: %v)", env["NOTESYNC_CMD"], build.Name, copies)
	}
	if src := copies["/usr/local/bin/litefs"]; src != build.Name+":/out/litefs" {
		t.Errorf("/usr/local/bin/litefs is %q, want the LiteFS built in %q", src, build.Name)
	}
	// `litefs mount` without -config reads ./litefs.yml, ~/litefs.yml, then
	// /etc/litefs.yml: the repository's file goes to the last, and nowhere else.
	for dst, src := range copies {
		if (src == "litefs.yml") != (dst == "/etc/litefs.yml") {
			t.Errorf("COPY %s %s: the repository's litefs.yml belongs at /etc/litefs.yml only", src, dst)
		}
	}
	for _, src := range copies {
		if strings.Contains(src, "/usr/local/go") {
			t.Errorf("COPY %s: the Go toolchain in the runtime image", src)
		}
	}

	eps := runtime.all("ENTRYPOINT")
	if len(eps) != 1 {
		t.Fatalf("want one ENTRYPOINT in the runtime stage, got %d", len(eps))
	}
	var ep []string
	if err := json.Unmarshal([]byte(eps[0].Args), &ep); err != nil {
		t.Fatalf("ENTRYPOINT %s: want the exec (JSON) form, so LiteFS is the process Fly signals: %v", eps[0].Args, err)
	}
	if !slices.Equal(ep, []string{"litefs", "mount"}) {
		t.Errorf("ENTRYPOINT %q, want [litefs mount]", ep)
	}
	if len(runtime.all("CMD")) > 0 {
		t.Errorf("a CMD would be passed to litefs mount as arguments")
	}

	// LiteFS's environment.
	if env["LITEFS_LEASE_TYPE"] != "consul" {
		t.Errorf("LITEFS_LEASE_TYPE=%q: on Fly the lease is Consul's", env["LITEFS_LEASE_TYPE"])
	}
	_, apiPort, err := net.SplitHostPort(env["LITEFS_HTTP_ADDR"])
	if err != nil {
		t.Fatalf("LITEFS_HTTP_ADDR=%q: %v", env["LITEFS_HTTP_ADDR"], err)
	}
	if u, err := url.Parse(env["LITEFS_URL"]); err != nil || u.Port() != apiPort || !net.ParseIP(u.Hostname()).IsLoopback() {
		t.Errorf("LITEFS_URL=%q, the app's way to LiteFS, is not LITEFS_HTTP_ADDR=%q on loopback", env["LITEFS_URL"], env["LITEFS_HTTP_ADDR"])
	}
	if env["LITEFS_DIR"] == "" || env["LITEFS_DIR"] == env["LITEFS_DATA_DIR"] || strings.HasPrefix(env["LITEFS_DIR"]+"/", env["LITEFS_DATA_DIR"]+"/") {
		t.Errorf("LITEFS_DIR=%q must be a mount point outside LITEFS_DATA_DIR=%q", env["LITEFS_DIR"], env["LITEFS_DATA_DIR"])
	}
}

func TestDockerignoreKeepsBuildInputs(t *testing.T) {
	b, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	ignore := parseDockerignore(string(b))

	// Every file the build reads: the sources of every package of this module
	// the binary is made of, their embedded files, go.mod, go.sum, litefs.yml.
	need := []string{"go.mod", "go.sum", "litefs.yml"}
	out, err := exec.Command("go", "list", "-deps", "-json", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	wd, _ := os.Getwd()
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for dec.More() {
		var p struct {
			Dir                                           string
			Module                                        *struct{ Path string }
			GoFiles, CgoFiles, CFiles, HFiles, EmbedFiles []string
		}
		if err := dec.Decode(&p); err != nil {
			t.Fatal(err)
		}
		if p.Module == nil || p.Module.Path != "notesync" {
			continue
		}
		rel, _ := filepath.Rel(wd, p.Dir)
		for _, files := range [][]string{p.GoFiles, p.CgoFiles, p.CFiles, p.HFiles, p.EmbedFiles} {
			for _, f := range files {
				need = append(need, filepath.ToSlash(filepath.Join(rel, f)))
			}
		}
	}
	if len(need) < 10 {
		t.Fatalf("go list found only %v", need)
	}
	for _, f := range need {
		if ignore(f) {
			t.Errorf(".dockerignore excludes %s, which the image build needs", f)
		}
	}
	for _, f := range []string{"data/notesync.db", "data/cluster/node1/fuse/notesync.db", ".git/HEAD",
		"notesync.test", "cluster/cluster.test", "cpu.prof", "realtime/cpu.out", "data/cluster/node1/node.log"} {
		if !ignore(f) {
			t.Errorf(".dockerignore lets %s into the build context", f)
		}
	}
}

// parseDockerignore returns a matcher with Docker's .dockerignore rules: a
// path is excluded when the last pattern matching it or one of its parent
// directories is not a !negation; * and ? stay within a path element, **
// spans any number of them.
func parseDockerignore(text string) func(string) bool {
	type rule struct {
		re     *regexp.Regexp
		negate bool
	}
	var rules []rule
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		negate := strings.HasPrefix(line, "!")
		line = strings.TrimPrefix(line, "!")
		line = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(line)), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(line); i++ {
			switch c := line[i]; {
			case strings.HasPrefix(line[i:], "**/"):
				re.WriteString("(.*/)?")
				i += 2
			case strings.HasPrefix(line[i:], "**"):
				re.WriteString(".*")
				i++
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		rules = append(rules, rule{regexp.MustCompile(re.String()), negate})
	}
	return func(p string) bool {
		excluded := false
		for _, r := range rules {
			for q := p; q != "." && q != "/" && q != ""; q = path.Dir(q) {
				if r.re.MatchString(q) {
					excluded = !r.negate
					break
				}
			}
		}
		return excluded
	}
}

func TestFlyTOML(t *testing.T) {
	fc := readFlyTOML(t)
	runtime := parseDockerfile(t, "Dockerfile")
	env := runtime[len(runtime)-1].env()

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
	if d := mustDuration(t, "kill_timeout", fc.KillTimeout); d < 15*time.Second || d > 300*time.Second {
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

	// The proxy and the checks reach the port the app listens on.
	cfg := machineConfig(t, fc, env, testMachines(fc)[0])
	_, port, _ := net.SplitHostPort(cfg.HTTPAddr)
	if strconv.Itoa(fc.HTTPService.InternalPort) != port {
		t.Errorf("internal_port %d, but the app listens on %s", fc.HTTPService.InternalPort, cfg.HTTPAddr)
	}
	for _, in := range runtime[len(runtime)-1].all("EXPOSE") {
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
	if fc.Metrics.Port == fc.HTTPService.InternalPort {
		t.Errorf("[metrics] port %d is the public service's port", fc.Metrics.Port)
	}

	// Liveness routes traffic; readiness is checked too. Every check path
	// is answered 200 by a running node, before its timeout (/readyz gives
	// itself 2 s).
	checks := map[string]flyCheck{}
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
		if d := mustDuration(t, name+" timeout", c.Timeout); d <= 2*time.Second {
			t.Errorf("%s: timeout %v: /readyz may take 2 s to say why it is not ready", name, d)
		}
		mustDuration(t, name+" interval", c.Interval)
		mustDuration(t, name+" grace_period", c.GracePeriod)
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

// flyMachine is what Fly gives one machine.
type flyMachine struct {
	ID, Region, PrivateIP string
}

// testMachines are three machines: two in the primary region (the lease
// candidates), one elsewhere.
func testMachines(fc *flyConfig) []flyMachine {
	other := "syd"
	if fc.PrimaryRegion == other {
		other = "ord"
	}
	return []flyMachine{
		{ID: "148e21ea7e4389", Region: fc.PrimaryRegion, PrivateIP: "fdaa:0:1a2b:a7b:1f4:8d3c:1e2f:2"},
		{ID: "e784079b449483", Region: fc.PrimaryRegion, PrivateIP: "fdaa:0:1a2b:a7b:2c1:5a0e:77b1:2"},
		{ID: "3d8d9e1bd21589", Region: other, PrivateIP: "fdaa:0:1a2b:a7b:9e:41c2:b3a4:2"},
	}
}

// machineEnv is the environment of a machine: the image's ENV, fly.toml's
// [env], what Fly sets, and the secrets docs/DEPLOY.md has the deployer set.
func machineEnv(fc *flyConfig, image map[string]string, m flyMachine) map[string]string {
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

// machineConfig parses the node's configuration as it starts on machine m:
// the command line litefs.yml's exec runs, with the machine's environment.
func machineConfig(t *testing.T, fc *flyConfig, image map[string]string, m flyMachine) *config {
	t.Helper()
	env := machineEnv(fc, image, m)
	args := litefsExecArgs(t, env)
	cfg, err := parseConfig(args[1:], func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatalf("machine %s: the node refuses to start: %v", m.ID, err)
	}
	return cfg
}

// litefsExecArgs is the command line of litefs.yml's (last) exec entry,
// expanded with env. The entry uses plain ${VAR}s, which LiteFS expands as
// os.Expand does; TestLiteFSConfigOnFly runs the real thing.
func litefsExecArgs(t *testing.T, env map[string]string) []string {
	t.Helper()
	var lf struct {
		Exec []struct {
			Cmd string `yaml:"cmd"`
		} `yaml:"exec"`
	}
	b, err := os.ReadFile("litefs.yml")
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &lf); err != nil {
		t.Fatalf("litefs.yml: %v", err)
	}
	if len(lf.Exec) == 0 {
		t.Fatal("litefs.yml has no exec: LiteFS would not start the app")
	}
	args := shellFields(os.Expand(lf.Exec[len(lf.Exec)-1].Cmd, func(k string) string { return env[k] }))
	if len(args) == 0 {
		t.Fatalf("litefs.yml's exec expands to nothing")
	}
	return args
}

func TestFlyMachinesStartAsDistinctNodes(t *testing.T) {
	fc := readFlyTOML(t)
	stages := parseDockerfile(t, "Dockerfile")
	image := stages[len(stages)-1].env()

	env := machineEnv(fc, image, testMachines(fc)[0])
	if args := litefsExecArgs(t, env); args[0] != image["NOTESYNC_CMD"] {
		t.Errorf("litefs.yml's exec runs %q, not NOTESYNC_CMD=%q", args[0], image["NOTESYNC_CMD"])
	}

	_, bindPort, err := net.SplitHostPort(fc.Env["GOSSIP_BIND"])
	if err != nil {
		t.Fatalf("[env] GOSSIP_BIND=%q: %v", fc.Env["GOSSIP_BIND"], err)
	}
	names, adverts := map[string]bool{}, map[string]bool{}
	for _, m := range testMachines(fc) {
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
		env := machineEnv(fc, image, testMachines(fc)[0])
		delete(env, secret)
		_, err := parseConfig(nil, func(k string) string { return env[k] }, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "fly secrets set") || !strings.Contains(err.Error(), secret) {
			t.Errorf("without %s: %v, want an error naming it and `fly secrets set`", secret, err)
		}
	}
}

func TestLiteFSConfigReadsOnlyWhatTheMachineHas(t *testing.T) {
	fc := readFlyTOML(t)
	stages := parseDockerfile(t, "Dockerfile")
	image := stages[len(stages)-1].env()
	guide, err := os.ReadFile("docs/DEPLOY.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range litefsVars(t) {
		_, inImage := image[v]
		_, inEnv := fc.Env[v]
		switch {
		case inImage, inEnv, slices.Contains(flyRuntimeVars, v):
		case v == "HOSTNAME": // set by `litefs mount` itself when unset
		case slices.Contains(deploySecrets, v):
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
	b, _ := os.ReadFile("litefs.yml")
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
	for i, m := range testMachines(fc) {
		env := machineEnv(fc, image, m)
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
	b, err := os.ReadFile("litefs.yml")
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

// ------------------------------------------------- LiteFS under a Consul lease

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
func startLiteFS(t *testing.T, fc *flyConfig, image map[string]string, m flyMachine, consulURL string) *litefsRun {
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

	env := machineEnv(fc, image, m)
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
	run.cmd = exec.Command(bin, "mount", "-config", "litefs.yml")
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

func isMounted(dir string) bool {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 && fields[4] == dir {
			return true
		}
	}
	return false
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
	fc := readFlyTOML(t)
	stages := parseDockerfile(t, "Dockerfile")
	image := stages[len(stages)-1].env()
	const token = "consul-token"
	prefix := fc.App + "-1a2b3c4d"
	wantKey := prefix + "/litefs/" + fc.App // litefs.yml's key under the app's Consul prefix

	t.Run("primary region: candidate, takes the lease, starts the app", func(t *testing.T) {
		consul := newFakeConsul(token)
		srv := httptest.NewServer(consul)
		defer srv.Close()
		m := testMachines(fc)[0]
		run := startLiteFS(t, fc, image, m, strings.Replace(srv.URL, "http://", "http://:"+token+"@", 1)+"/"+prefix+"/")

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
		consul := newFakeConsul(token)
		srv := httptest.NewServer(consul)
		defer srv.Close()
		m := testMachines(fc)[2]
		run := startLiteFS(t, fc, image, m, strings.Replace(srv.URL, "http://", "http://:"+token+"@", 1)+"/"+prefix+"/")

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
