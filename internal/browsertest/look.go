package browsertest

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/draw"
	"image/png"
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

// Look shows the tab's page on every screen: for each, a screenshot in the
// test's artifacts and axe's verdict (CheckAccessibility). what names the
// view. The tab is left on the desktop screen.
func Look(t testing.TB, tb *Tab, what string) {
	t.Helper()
	for _, sc := range Screens {
		tb.SetViewport(t, sc)
		// As it is at rest: colours judged mid-transition are no colours.
		tb.WaitFor(t, 5*time.Second, "transitions to end", `document.getAnimations().length === 0`)
		tb.Screenshot(t, what+"-"+sc.Name)
		CheckAccessibility(t, tb, what+" on the "+sc.Name)
	}
	tb.SetViewport(t, Desktop)
}

var unsafeName = regexp.MustCompile(`[^a-z0-9._-]+`)

func fileName(s string) string {
	return strings.Trim(unsafeName.ReplaceAllString(strings.ToLower(s), "-"), "-")
}

// SideBySide saves one picture of the tabs' pages next to each other, as
// they are now, on a light grey ground, at path (a PNG).
func SideBySide(t testing.TB, path string, tabs ...*Tab) {
	t.Helper()
	const gap = 24
	var shots []image.Image
	width, height := gap, 0
	for _, tb := range tabs {
		ctx, cancel := context.WithTimeout(tb.Ctx, 20*time.Second)
		data, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		cancel()
		if err != nil {
			t.Fatalf("%s: screenshot: %v", tb.Name, err)
		}
		img, err := png.Decode(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: read its screenshot: %v", tb.Name, err)
		}
		shots = append(shots, img)
		width += img.Bounds().Dx() + gap
		height = max(height, img.Bounds().Dy())
	}
	out := image.NewRGBA(image.Rect(0, 0, width, height+2*gap))
	draw.Draw(out, out.Bounds(), image.NewUniform(color.RGBA{0xd9, 0xdd, 0xe3, 0xff}), image.Point{}, draw.Src)
	x := gap
	for _, img := range shots {
		draw.Draw(out, image.Rect(x, gap, x+img.Bounds().Dx(), gap+img.Bounds().Dy()), img, img.Bounds().Min, draw.Src)
		x += img.Bounds().Dx() + gap
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestCompression}).Encode(&buf, out); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d×%d, %d KiB)", path, width, height+2*gap, buf.Len()>>10)
}
