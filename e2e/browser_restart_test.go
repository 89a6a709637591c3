package e2e

// Real-browser tests of what outlives the browser and the build
// (docs/PROTOCOL.md §12): writes waiting in a browser that is quit and
// started again, and a service worker replaced by a new release.

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"notesync/internal/apitest"
	bt "notesync/internal/browsertest"
	"notesync/internal/localcluster"
)

func TestBrowserRestartKeepsPendingWrites(t *testing.T) {
	profile := t.TempDir()
	browser, quit := bt.StartOn(t, profile) // first: skips at once without Chromium
	node := startNode(t)
	b := bt.OpenTab(t, browser, "tab B", "")
	bt.SignUp(t, b, node.URL, "tamsin")
	b.WaitConnected(t)
	cookie := b.CookieHeader(t, node.URL)
	first := bt.CreateNote(t, b, "first").ID
	b.WaitFor(t, 5*time.Second, "the note", bt.HasNote(first))
	waitControlled(t, b)

	node.Stop(t)
	b.WaitFor(t, 5*time.Second, "the tab to notice the node is gone", `document.querySelector('#conn-status').dataset.state !== 'open'`)
	submitNote(t, b, "offline one")
	b.WaitFor(t, 5*time.Second, "the new note, pending", pendingCount+` === 1`)
	b.EditNote(t, first, "first, edited offline")
	b.SaveNote(t, first)
	submitNote(t, b, "offline two")
	b.EditNote(t, first, "first, edited twice")
	b.SaveNote(t, first)
	b.WaitFor(t, 5*time.Second, "four changes to wait", pendingCount+` === 4`)

	quit() // the whole browser, with the node still down
	browser, _ = bt.StartOn(t, profile)
	c := bt.OpenTab(t, browser, "tab C", node.URL+"/")
	acceptLeaving(t, c)
	c.WaitNotesPage(t)
	t.Run("the browser started again shows every pending change", func(t *testing.T) {
		checkPendingShown(t, c, 4, 3, "offline two", "offline one", "first, edited twice")
	})

	node.Start(t)
	c.WaitConnected(t)
	c.WaitFor(t, 20*time.Second, "every pending change to be sent", allSent)
	t.Run("every change lands once, in order", func(t *testing.T) {
		checkLandedOnce(t, node.URL, cookie, first)
		want, _ := json.Marshal([]string{"offline two", "offline one", "first, edited twice"})
		c.WaitFor(t, 10*time.Second, "the tab to show them", shownJSON+` === `+bt.JSString(string(want)))
	})
}

// buildLabelled builds notesync linked with the release label label: the
// same files, another release (web.Release), as a deploy is.
func buildLabelled(t *testing.T, label string) string {
	t.Helper()
	root, err := localcluster.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), "notesync")
	cmd := exec.Command("go", "build", "-ldflags", "-X notesync/app/web.releaseLabel="+label, "-o", exe, ".")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}

// workerRelease is the release that the node at base serves /sw.js for.
func workerRelease(t *testing.T, base string) string {
	t.Helper()
	_, sw := apitest.New(t, base).Do("GET", "/sw.js", "", "")
	m := regexp.MustCompile(`^self\.RELEASE = "([0-9a-f]+)";`).FindStringSubmatch(sw)
	if m == nil {
		t.Fatalf("/sw.js begins %.100q", sw)
	}
	return m[1]
}

const (
	pageRelease = `document.querySelector('script[data-release]').dataset.release`
	cacheNames  = `caches.keys().then((k) => JSON.stringify(k))`
)

func TestBrowserWorkerUpdatesOnNewRelease(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	node := startNode(t)
	next := buildLabelled(t, "next")
	a := bt.OpenTab(t, browser, "tab A", "")
	bt.SignUp(t, a, node.URL, "ulla")
	a.WaitConnected(t)
	waitControlled(t, a)
	old := workerRelease(t, node.URL)
	if got := bt.Eval[string](t, a, pageRelease); got != old {
		t.Fatalf("the page is of release %q, its worker of %q", got, old)
	}
	if got := bt.Eval[string](t, a, cacheNames, chromedp.EvalAwaitPromise); got != `["notesync-`+old+`"]` {
		t.Fatalf("before the deploy the caches are %s", got)
	}

	// The deploy: the same address, another build.
	node.Stop(t)
	node.exe = next
	node.Start(t)
	release := workerRelease(t, node.URL)
	if release == old {
		t.Fatalf("the new build serves the old release %q", old)
	}
	a.Navigate(t, node.URL+"/")
	a.WaitNotesPage(t)
	t.Run("the page reloaded after a deploy runs the new release, with its worker", func(t *testing.T) {
		if got := bt.Eval[string](t, a, pageRelease); got != release {
			t.Errorf("the reloaded page is of release %q, want %q", got, release)
		}
		a.WaitFor(t, 15*time.Second, "the new worker to control the page", `navigator.serviceWorker.controller?.state === 'activated'`)
		want := `["notesync-` + release + `"]`
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			got := bt.Eval[string](t, a, cacheNames, chromedp.EvalAwaitPromise)
			if got == want {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the caches are %s, want %s: the new worker's alone", got, want)
			}
		}
	})

	a.WaitConnected(t)
	time.Sleep(500 * time.Millisecond) // the list is kept 300 ms after a swap
	node.Stop(t)
	a.Navigate(t, node.URL+"/")
	a.WaitNotesPage(t)
	t.Run("the page kept for offline is the new release's", func(t *testing.T) {
		if got := bt.Eval[string](t, a, pageRelease); got != release {
			t.Errorf("the page opened offline is of release %q, want %q", got, release)
		}
	})
}
