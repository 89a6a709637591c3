package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// With -profile DIR, the tool takes CPU profiles of the nodes while the
// writes run: each node's LiteFS (its HTTP port serves /debug/pprof, in
// notesync's cluster) and each notesync node (a -benchmark node serves
// /debug/pprof/profile on its metrics address). They start a second into
// the write phase and last until a second before its end, so that they
// hold the steady rate only (a phase under 4 s: one second in its
// middle): `go tool pprof -top DIR/node1-litefs.pprof`.

// profileWrites starts the profiles of the write phase (-duration long)
// and returns a wait that returns once every profile is saved.
func (r *loadRun) profileWrites(ctx context.Context) (wait func()) {
	dir, d := r.cfg.Profile, r.cfg.Duration
	if dir == "" || !r.tgt.nodeStats {
		return func() {}
	}
	// A second of a short phase, in its middle.
	start, secs := time.Second, int((d-2*time.Second)/time.Second)
	if secs < 1 {
		start, secs = (d-time.Second)/2, 1
	}
	if start < 0 {
		r.logf("-profile: the write phase is too short to profile (%s; it takes 1 s at least)", d)
		return func() {}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.logf("-profile: %v", err)
		return func() {}
	}
	type source struct{ name, url string }
	var srcs []source
	for i, u := range r.murls {
		srcs = append(srcs, source{fmt.Sprintf("node%d-app", i+1), u})
	}
	if r.cfg.Start == "cluster" {
		for i, u := range litefsURLs(r.urls) {
			srcs = append(srcs, source{fmt.Sprintf("node%d-litefs", i+1), u})
		}
	}
	var wg sync.WaitGroup
	for _, s := range srcs {
		wg.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(start):
			}
			path := filepath.Join(dir, s.name+".pprof")
			if err := fetchProfile(ctx, s.url+fmt.Sprintf("/debug/pprof/profile?seconds=%d", secs), path); err != nil {
				r.logf("-profile: %s: %v", s.name, err)
				return
			}
			r.logf("-profile: %s (%d s of the writes)", path, secs)
		})
	}
	return wg.Wait
}

// fetchProfile saves the profile url serves at path.
func fetchProfile(ctx context.Context, url, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
