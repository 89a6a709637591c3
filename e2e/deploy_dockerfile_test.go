package e2e

// What the Fly.io image is built from. The image cannot be built here (no
// Docker engine), so these tests read the Dockerfile the way Docker does
// and cross-check it with go.mod: what is built, from what, and what the
// runtime stage holds.

import (
	"encoding/json"
	"net"
	"net/url"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"notesync/internal/deploytest"
)

// goMod is what go.mod says, as `go mod edit -json` reads it.
type goMod struct {
	Go      string
	Require []struct{ Path, Version string }
	Tool    []struct{ Path string }
}

func readGoMod(t *testing.T) goMod {
	t.Helper()
	cmd := exec.Command("go", "mod", "edit", "-json")
	cmd.Dir = filepath.Dir(deploytest.Path(t, "go.mod"))
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod edit -json: %v", err)
	}
	var m goMod
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatalf("go mod edit -json: %v", err)
	}
	return m
}

// require is the version go.mod requires of module path ("" if none).
func (m goMod) require(path string) string {
	for _, r := range m.Require {
		if r.Path == path {
			return r.Version
		}
	}
	return ""
}

// litefsTool is the LiteFS command go.mod's tool line pins.
func litefsTool(t *testing.T, m goMod) string {
	t.Helper()
	for _, tool := range m.Tool {
		if path.Base(tool.Path) == "litefs" {
			return tool.Path
		}
	}
	t.Fatalf("go.mod has no tool line for LiteFS (tools: %v)", m.Tool)
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

func TestDockerfileBuildsAppAndPinnedLiteFS(t *testing.T) {
	stages := deploytest.Dockerfile(t)
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
	wantMaj, wantMin := majorMinor(t, mod.Go)
	if maj, min := majorMinor(t, strings.TrimSuffix(tag, "-bookworm")); maj < wantMaj || maj == wantMaj && min < wantMin {
		t.Errorf("build stage FROM %s is older than go.mod's go %s", build.Image, mod.Go)
	}

	var appBuild, litefsBuild *deploytest.Instr
	tool := litefsTool(t, mod)
	for i, in := range build.All("RUN") {
		switch {
		case strings.Contains(in.Args, "go build") && strings.Contains(in.Args, tool):
			litefsBuild = &build.All("RUN")[i]
		case strings.Contains(in.Args, "go build") && strings.Contains(in.Args, "-o /out/notesync"):
			appBuild = &build.All("RUN")[i]
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
	if mod.require("github.com/superfly/litefs") == "" {
		t.Errorf("go.mod does not pin github.com/superfly/litefs")
	}
	goCmd := regexp.MustCompile(`\bgo (build|mod|list|install|get)\b`)
	for _, in := range build.All("RUN") {
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
				if from, ok := deploytest.FlagValue(t, in.Args, "from"); ok && !stageNames[from] {
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
	stages := deploytest.Dockerfile(t)
	build, runtime := stages[0], stages[len(stages)-1]
	env := runtime.Env(t)

	// The app is linked against the build stage's glibc: same Debian release.
	if runtime.Image != "debian:bookworm-slim" {
		t.Errorf("runtime stage FROM %s: want debian:bookworm-slim (the build stage is %s)", runtime.Image, build.Image)
	}
	if strings.HasPrefix(runtime.Image, "golang") {
		t.Errorf("runtime stage is a Go toolchain image")
	}

	var pkgs []string
	for _, in := range runtime.All("RUN") {
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

	copies := runtime.Copies(t)
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

	eps := runtime.All("ENTRYPOINT")
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
	if len(runtime.All("CMD")) > 0 {
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
