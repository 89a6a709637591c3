package e2e

// The page through a failover (docs/PROTOCOL.md §11): the primary is
// killed, a note is added meanwhile in a tab on a replica, and the page
// waits for the cluster, calmly, instead of showing an error.

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"notesync/cluster/local/lease"
	bt "notesync/internal/browsertest"
)

// A failover takes the lease's TTL plus 2 s (§11); the page waits up to
// 30 s for it.
const failoverBound = lease.DefaultTTL + 2*time.Second

func TestBrowserFailover(t *testing.T) {
	browser := bt.Start(t) // first: skips at once without Chromium
	c := startCluster(t, 3)
	// Tab A on node2 (a replica, behind), tab B on node3 (in front).
	a, b := bt.TwoTabs(t, browser, "weathering", c.URL(2), c.URL(3))
	if got := c.Primary(); got != "node1" {
		t.Fatalf("primary %q, want node1", got)
	}
	t.Run("which answers the page tries again, and after how long", func(t *testing.T) {
		checkRetryWait(t, b)
	})
	for _, tab := range []*bt.Tab{a, b} {
		watchNoteErrors(t, tab)
	}

	const body = "Added while the primary was down"
	start := time.Now()
	if err := c.Kill("node1"); err != nil {
		t.Fatal(err)
	}
	a.Exec(t, `(() => {
		const form = document.querySelector('#note-form');
		form.querySelector('textarea[name=body]').value = `+bt.JSString(body)+`;
		form.requestSubmit();
	})()`)

	a.WaitFor(t, failoverBound, "the page saying it waits for the cluster",
		`(() => { const w = document.querySelector('#write-wait'); return w && !w.hidden && /waiting for the cluster/i.test(w.textContent); })()`)
	t.Logf("tab A: waiting for the cluster %v after the kill", time.Since(start).Round(time.Millisecond))
	// Meanwhile the person empties the form: what it holds now is not what
	// is being sent, and the retries go on.
	a.Exec(t, `document.querySelector('#note-form textarea[name=body]').value = ''`)

	count := `[...document.querySelectorAll('#notes-list [data-note-id] .note-body')].filter((e) => e.textContent === ` + bt.JSString(body) + `).length`
	within := 30*time.Second + 5*time.Second // the page's patience, and a few seconds
	for _, tab := range []*bt.Tab{a, b} {
		tab.WaitFor(t, within-time.Since(start), "the note added during the failover", count+` >= 1`)
		t.Logf("%s: the note shows %v after the kill", tab.Name, time.Since(start).Round(time.Millisecond))
	}
	t.Logf("the note shows in both tabs %v after the kill of the primary (failover bound %v)", time.Since(start).Round(time.Millisecond), failoverBound)

	time.Sleep(time.Second) // a second copy, or a late error, would show by now
	for _, tab := range []*bt.Tab{a, b} {
		if n := bt.Eval[int](t, tab, count); n != 1 {
			t.Errorf("%s: the note shows %d times, want once", tab.Name, n)
		}
		left := bt.Eval[struct {
			Error, Waiting string
			Marked         []string
			Shown          []string
		}](t, tab, `(() => {
			const err = document.querySelector('#note-error');
			const wait = document.querySelector('#write-wait');
			const marked = [...document.querySelectorAll('#notes-list [data-note-id]')]
				.filter((e) => /fail|error|pending/.test(e.className) || e.dataset.failed !== undefined)
				.map((e) => e.outerHTML);
			return {
				error: err && !err.hidden ? err.textContent : '',
				waiting: wait && !wait.hidden ? wait.textContent : '',
				marked,
				shown: window.__noteErrors || [],
			};
		})()`)
		if left.Error != "" {
			t.Errorf("%s: an error is left on screen: %q", tab.Name, left.Error)
		}
		if left.Waiting != "" {
			t.Errorf("%s: still says it waits: %q", tab.Name, left.Waiting)
		}
		if len(left.Marked) > 0 {
			t.Errorf("%s: notes marked as failed: %q", tab.Name, left.Marked)
		}
		if len(left.Shown) > 0 {
			t.Errorf("%s: showed an error during the failover: %q", tab.Name, left.Shown)
		}
	}
}

// watchNoteErrors records in window.__noteErrors every text that
// #note-error shows, so that an error shown and then cleared is seen too.
func watchNoteErrors(t *testing.T, tab *bt.Tab) {
	t.Helper()
	tab.Exec(t, `(() => {
		window.__noteErrors = [];
		const err = document.querySelector('#note-error');
		new MutationObserver(() => {
			if (!err.hidden && err.textContent) window.__noteErrors.push(err.textContent);
		}).observe(err, { attributes: true, childList: true, characterData: true, subtree: true });
	})()`)
}

// checkRetryWait checks write.js's retryWait, the page's rule for trying
// a write again, in tab (random() fixed, so the jitter is known).
func checkRetryWait(t *testing.T, tab *bt.Tab) {
	t.Helper()
	cases := []struct {
		what string
		args string // res, tries, elapsed, patience, random
		want int
	}{
		{"a 201 is final", "answer(201), 1, 0, 30000, half", -1},
		{"a 4xx is final, Retry-After or not", "answer(429, '2'), 1, 0, 30000, half", -1},
		{"a 409 is final", "answer(409), 1, 0, 30000, half", -1},
		{"no answer: 0.5 s first", "null, 1, 0, 30000, half", 500},
		{"no answer: then doubling", "null, 3, 1500, 30000, half", 2000},
		{"no answer: at most 4 s", "null, 9, 10000, 30000, half", 4000},
		{"a 504 without Retry-After backs off", "answer(504), 2, 500, 30000, half", 1000},
		{"a 503 waits what Retry-After says", "answer(503, '2'), 1, 0, 30000, half", 2000},
		{"a Retry-After is capped", "answer(503, '60'), 1, 0, 30000, half", 4000},
		{"jitter: down to three quarters", "answer(503, '2'), 1, 0, 30000, () => 0", 1500},
		{"jitter: up to five quarters", "answer(503, '2'), 1, 0, 30000, () => 1", 2500},
		{"past the patience it gives up", "answer(503, '2'), 5, 29000, 30000, half", -1},
		{"the editor's short patience", "null, 1, 1800, 2000, half", -1},
	}
	for _, c := range cases {
		got := bt.Eval[int](t, tab, `import('/static/write.js').then(({ retryWait }) => {
			const answer = (status, ra) => ({ status, headers: { get: (h) => (h === 'Retry-After' ? ra ?? null : null) } });
			const half = () => 0.5;
			return retryWait(`+c.args+`);
		})`, chromedp.EvalAwaitPromise)
		if got != c.want {
			t.Errorf("%s: retryWait(%s) = %d, want %d", c.what, c.args, got, c.want)
		}
	}
}
