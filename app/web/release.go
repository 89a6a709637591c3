package web

import (
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"sync"
)

// release names the page's code as this binary serves it: a digest of
// the embedded static files. The tabs of a browser that share one
// real-time connection share it only with tabs of the same release
// (docs/PROTOCOL.md §13): a tab loaded after a deploy finds no worker of
// the release before it, whose messages to the tabs it might not
// understand.
var release = sync.OnceValue(func() string {
	h := sha256.New()
	fsys := staticFiles()
	err := fs.WalkDir(fsys, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(fsys, path)
		if err != nil {
			return err
		}
		h.Write([]byte(path))
		h.Write([]byte{0})
		h.Write(b)
		return nil
	})
	if err != nil {
		panic(err) // the files are embedded: they cannot go missing
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
})
