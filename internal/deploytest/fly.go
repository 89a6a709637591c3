package deploytest

import (
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

// FlyCheck is a health check of fly.toml.
type FlyCheck struct {
	Type        string `toml:"type"`
	Port        int    `toml:"port"`
	Method      string `toml:"method"`
	Path        string `toml:"path"`
	GracePeriod string `toml:"grace_period"`
	Interval    string `toml:"interval"`
	Timeout     string `toml:"timeout"`
}

// FlyConfig is every key fly.toml may set; FlyTOML refuses any other.
type FlyConfig struct {
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
		Checks []FlyCheck `toml:"checks"`
	} `toml:"http_service"`
	Checks  map[string]FlyCheck `toml:"checks"`
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

// FlyTOML decodes the module's fly.toml; a key FlyConfig does not know is
// an error, so a misspelt setting (which flyctl would not apply) fails here.
func FlyTOML(t testing.TB) *FlyConfig {
	t.Helper()
	var fc FlyConfig
	md, err := toml.DecodeFile(Path(t, "fly.toml"), &fc)
	if err != nil {
		t.Fatalf("fly.toml: %v", err)
	}
	if u := md.Undecoded(); len(u) > 0 {
		t.Fatalf("fly.toml: keys this test does not know (misspelt?): %v", u)
	}
	return &fc
}

// Duration reads a fly.toml duration: a string such as "30s", or a number
// of seconds.
func Duration(t testing.TB, what string, v any) time.Duration {
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
