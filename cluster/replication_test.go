package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A replica reads its lag and position from files LiteFS keeps in its
// mount; a directory with those files stands in for the mount here.
func TestReplicationSaysWhatAReplicaHears(t *testing.T) {
	dir := t.TempDir()
	l := &LiteFS{Dir: dir, DB: "notesync.db"}
	defer l.Close()
	write := func(name, s string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("notesync.db-pos", "0000000000000040/00000000000000ff\n")
	write(".primary", "node1\n")
	alive := PrimaryView{Name: "node1", State: "alive", TXID: 0x45}

	write(".lag", "+000000420\n")
	if r := l.Replication(alive); r.State != "current" || r.LagMS != 420 || r.TXID != 0x40 || r.PrimaryTXID != 0x45 || r.Reason != "" {
		t.Errorf("hearing the primary: %+v", r)
	}

	write(".lag", "+000012300\n")
	r := l.Replication(alive)
	if r.State != "stale" || r.LagMS != 12300 || r.Primary != "node1" {
		t.Errorf("not heard for 12.3 s: %+v", r)
	}
	for _, want := range []string{"no word from the primary's LiteFS for 12.3 s", "though gossip still reaches node1", "txid 64, 5 behind the primary", "503 or 504"} {
		if !strings.Contains(r.Reason, want) {
			t.Errorf("reason %q does not say %q", r.Reason, want)
		}
	}

	if r := l.Replication(PrimaryView{Name: "node1", State: "dead"}); !strings.Contains(r.Reason, "gossip cannot reach node1 either (dead)") {
		t.Errorf("primary dead in gossip too: %q", r.Reason)
	}
	if r := l.Replication(PrimaryView{}); !strings.Contains(r.Reason, "gossip knows no primary either") {
		t.Errorf("no primary known: %q", r.Reason)
	}

	write(".lag", "+2147483647\n") // LiteFS: not yet replicated
	if r := l.Replication(alive); r.State != "stale" || r.LagMS != -1 || !strings.Contains(r.Reason, "since this node started") {
		t.Errorf("never heard from the primary: %+v", r)
	}

	if r := (&LiteFS{}).Replication(alive); r != (Replication{}) {
		t.Errorf("without LiteFS: %+v, want nothing", r)
	}
}
