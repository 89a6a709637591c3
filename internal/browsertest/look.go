package browsertest

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// Viewport is a screen the page is looked at on.
type Viewport struct {
	Name          string
	Width, Height int64
	// Phone: a mobile viewport with a touch screen, as Chromium's device
	// mode has it (media queries see pointer: coarse). Headless Chromium
	// has no pointer otherwise (pointer: none), which a page must take for
	// a keyboard.
	Phone bool
}

// The two screens every view is checked on.
var (
	Desktop = Viewport{Name: "desktop", Width: 1280, Height: 900}
	Phone   = Viewport{Name: "phone", Width: 375, Height: 812, Phone: true}
	Screens = []Viewport{Desktop, Phone}
)

// SetViewport makes the tab's page render on v, until the next call.
func (tb *Tab) SetViewport(t testing.TB, v Viewport) {
	t.Helper()
	opts := []chromedp.EmulateViewportOption{chromedp.EmulatePortrait}
	if v.Phone {
		opts = append(opts, chromedp.EmulateMobile, chromedp.EmulateTouch, chromedp.EmulateScale(2))
	}
	ctx, cancel := context.WithTimeout(tb.Ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(v.Width, v.Height, opts...)); err != nil {
		t.Fatalf("%s: emulate the %s screen: %v", tb.Name, v.Name, err)
	}
	tb.WaitFor(t, 5*time.Second, "the page to take the "+v.Name+"'s width",
		`window.innerWidth === `+strconv.FormatInt(v.Width, 10))
}

// EmulateMedia sets media features (name, value, name, value…), such as
// "prefers-color-scheme", "dark" or "prefers-reduced-motion", "reduce",
// keeping the ones set before; an empty value removes one.
func (tb *Tab) EmulateMedia(t testing.TB, nameValues ...string) {
	t.Helper()
	// Every call of Emulation.setEmulatedMedia replaces all the features:
	// the tab keeps the ones in force.
	if tb.media == nil {
		tb.media = map[string]string{}
	}
	features := tb.media
	for i := 0; i+1 < len(nameValues); i += 2 {
		if nameValues[i+1] == "" {
			delete(features, nameValues[i])
		} else {
			features[nameValues[i]] = nameValues[i+1]
		}
	}
	var list []*emulation.MediaFeature
	for n, v := range features {
		list = append(list, &emulation.MediaFeature{Name: n, Value: v})
	}
	ctx, cancel := context.WithTimeout(tb.Ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Features: list}); err != nil {
		t.Fatalf("%s: emulate media %v: %v", tb.Name, nameValues, err)
	}
}

// Screenshot saves a picture of the whole page as name.png in the test's
// artifact folder (go test -artifacts keeps it: a failed run shows what
// the page looked like), and returns its path.
func (tb *Tab) Screenshot(t testing.TB, name string) string {
	t.Helper()
	return tb.ScreenshotTo(t, filepath.Join(t.ArtifactDir(), fileName(name)+".png"))
}

// ScreenshotTo saves a picture of the whole page at path.
func (tb *Tab) ScreenshotTo(t testing.TB, path string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(tb.Ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("%s: screenshot %s: %v", tb.Name, path, err)
		return ""
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Errorf("%s: save the screenshot: %v", tb.Name, err)
		return ""
	}
	return path
}

var unsafeName = regexp.MustCompile(`[^a-z0-9._-]+`)

func fileName(s string) string {
	return strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(s), "-"), "-")
}
