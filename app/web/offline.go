package web

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"sort"
	"sync"
)

// serviceWorkerJS is the page's service worker (docs/PROTOCOL.md §12),
// served at /sw.js so that its scope is the whole origin.
//
//go:embed sw/sw.js
var serviceWorkerJS []byte

// releaseLabel, set when the binary is linked
// (-ldflags "-X notesync/app/web.releaseLabel=<label>"), is part of the
// release as well: a build that names itself anew renews the page's
// worker and cache even where its files are the last build's.
var releaseLabel string

// Release names this build of the page: a hash of its templates, its
// static assets and its service worker, and the label it was linked with.
// The service worker names its cache after it, so a deploy that changes
// any of them is a new worker that replaces the old one and its cache.
var Release = sync.OnceValue(func() string {
	h := sha256.New()
	if releaseLabel != "" {
		h.Write([]byte("label\x00" + releaseLabel + "\x00"))
	}
	for _, fsys := range []fs.FS{templateFS, staticFS} {
		err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := fs.ReadFile(fsys, path)
			if err != nil {
				return err
			}
			h.Write([]byte(path + "\x00"))
			h.Write(b)
			return nil
		})
		if err != nil {
			panic(err) // the embedded files are part of the binary
		}
	}
	h.Write(serviceWorkerJS)
	return hex.EncodeToString(h.Sum(nil))[:16]
})

// staticAssets lists the /static/ files the service worker keeps.
func staticAssets() []string {
	var names []string
	_ = fs.WalkDir(staticFiles(), ".", func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			names = append(names, "/static/"+path)
		}
		return err
	})
	sort.Strings(names)
	return names
}

// serviceWorker is /sw.js as served: the release and the assets to keep,
// then the worker itself.
var serviceWorker = sync.OnceValue(func() []byte {
	release, _ := json.Marshal(Release())
	assets, _ := json.Marshal(staticAssets())
	var b bytes.Buffer
	b.WriteString("self.RELEASE = " + string(release) + ";\n")
	b.WriteString("self.ASSETS = " + string(assets) + ";\n")
	b.Write(serviceWorkerJS)
	return b.Bytes()
})

// handleServiceWorker serves /sw.js. It is never cached (no-store, as
// every answer outside /static/), so the browser finds a new release at
// the next visit; it needs no Service-Worker-Allowed, since it is served
// from the root, and its CSP is the pages' (connect-src 'self').
func (s *Server) handleServiceWorker(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	_, _ = w.Write(serviceWorker())
}
