// Package localcluster builds notesync and runs a local cluster of it under
// real LiteFS mounts: the one bootstrap of the e2e tests and of the load
// tool (bench), on top of local.Launcher.
package localcluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"notesync/cluster/local"
)

// BasePort is node1's HTTP port; node i listens on BasePort+i-1 (LiteFS
// +100, gossip +200, metrics +300), on a loopback address of its own.
const BasePort = 18081

// Binaries are what a local cluster runs.
type Binaries struct {
	Exe    string // notesync
	LiteFS string // litefs, as go.mod's tool line pins it
	Config string // the repository's litefs.yml
}

// ModuleRoot is the directory of the notesync module the caller runs in.
func ModuleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run inside the notesync module")
	}
	return filepath.Dir(mod), nil
}

// Build builds notesync from the module into dir and returns its path.
func Build(dir string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	exe := filepath.Join(dir, "notesync")
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return exe, nil
}

// Find returns the binaries for exe (built with Build, or another build
// of notesync): LiteFS and the module's litefs.yml.
func Find(exe string) (Binaries, error) {
	root, err := ModuleRoot()
	if err != nil {
		return Binaries{}, err
	}
	litefs, err := local.LiteFSBinary(os.Getenv("LITEFS_BIN"))
	if err != nil {
		return Binaries{}, err
	}
	return Binaries{Exe: exe, LiteFS: litefs, Config: filepath.Join(root, "litefs.yml")}, nil
}

// RandomLoopback is a loopback address for one run, so that runs side by
// side (tests in parallel, a person's cluster) never collide.
func RandomLoopback() string {
	return fmt.Sprintf("127.0.%d.%d", 10+rand.IntN(200), 2+rand.IntN(250))
}

// Launcher describes n nodes of b on a loopback address of their own, with
// their state under dir and env added to every node's environment.
func Launcher(b Binaries, n int, dir string, env ...string) *local.Launcher {
	return &local.Launcher{
		N: n, BasePort: BasePort, Host: RandomLoopback(), Dir: dir,
		Exe: b.Exe, LiteFS: b.LiteFS, Config: b.Config, ExtraEnv: env,
	}
}

// Run starts l, and a supervisor that starts again a node that dies. stop
// stops the supervisor, then every node, and removes their mounts.
func Run(ctx context.Context, l *local.Launcher) (stop func(), err error) {
	if err := l.Open(ctx); err != nil {
		l.Close()
		return nil, err
	}
	sctx, cancel := context.WithCancel(context.Background())
	supervised := make(chan struct{})
	go func() { defer close(supervised); l.Run(sctx) }()
	return func() {
		cancel()
		<-supervised
		l.Close()
	}, nil
}
