package browsertest

import (
	_ "embed"
	"fmt"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// axe-core, the accessibility rules engine of Deque Systems, is vendored
// (axe/axe.min.js, version 4.14.1 from the npm registry, MPL-2.0: see
// axe/LICENSE and axe/LICENSE-3RD-PARTY.txt) rather than fetched when the
// tests run: the tests need no network and no npm, and every run checks
// the pages against the same rules. To update it: npm pack axe-core, and
// copy axe.min.js and both licence files from the package here.
//
//go:embed axe/axe.min.js
var axeSource string

// AxeViolation is one rule that the page breaks, with where.
type AxeViolation struct {
	ID     string
	Impact string // minor, moderate, serious, critical
	Help   string
	Nodes  []struct {
		Target         []string
		FailureSummary string
	}
}

func (v AxeViolation) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %s", v.ID, v.Impact, v.Help)
	for i, n := range v.Nodes {
		if i == 5 {
			fmt.Fprintf(&b, "\n    … and %d more", len(v.Nodes)-i)
			break
		}
		fmt.Fprintf(&b, "\n    %s: %s", strings.Join(n.Target, " "), strings.ReplaceAll(n.FailureSummary, "\n", " "))
	}
	return b.String()
}

// CheckAccessibility runs axe-core on the page the tab shows, as it is now,
// with its rules for WCAG 2.2 A and AA and its best practices, and fails
// the test for every serious or critical violation; lesser ones are
// logged. axe is evaluated over the DevTools protocol, which the page's
// Content-Security-Policy does not govern, so the page is checked under
// its own policy. what names the view in messages.
func CheckAccessibility(t testing.TB, tb *Tab, what string) {
	t.Helper()
	if !Eval[bool](t, tb, `typeof window.axe === 'object'`) {
		// The script defines window.axe; it returns nothing of use.
		if _, err := TryEval[any](tb, axeSource+"\n;true"); err != nil {
			t.Fatalf("%s: load axe-core into %s: %v", tb.Name, what, err)
		}
	}
	violations := Eval[[]AxeViolation](t, tb, `axe.run(document, {
		runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice']},
		resultTypes: ['violations'],
	}).then((r) => r.violations.map((v) => ({
		id: v.id, impact: v.impact, help: v.help,
		nodes: v.nodes.map((n) => ({target: n.target.map(String), failureSummary: n.failureSummary})),
	})))`, chromedp.EvalAwaitPromise)
	for _, v := range violations {
		if v.Impact == "serious" || v.Impact == "critical" {
			t.Errorf("%s: %s: %s", tb.Name, what, v)
		} else {
			t.Logf("%s: %s (not failing): %s", tb.Name, what, v)
		}
	}
}
