package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/jitaccess/terraform-provider-jit/internal/daemon"
	"github.com/jitaccess/terraform-provider-jit/internal/jit"
)

// EnvScreenshotDir names a directory for the status page's screenshots
// (kept after the test, for CI artifacts); by default they go to the
// test's temporary directory, removed at its end.
const EnvScreenshotDir = "JIT_SCREENSHOT_DIR"

// chromiumPath finds Debian's chromium (or $JIT_CHROMIUM).
func chromiumPath() string {
	if p := os.Getenv("JIT_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// newBrowser starts a headless chromium for the test, offline.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	path := chromiumPath()
	if path == "" {
		t.Skip("chromium is not installed (apt-get install chromium): the status page's browser test is skipped")
	}
	opts := slices.Concat(chromedp.DefaultExecAllocatorOptions[:], []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1400, 900),
	})
	// A browser that dies while starting (seen once on a loaded machine)
	// is started again, up to three times, with its output logged.
	for attempt := 1; ; attempt++ {
		allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.WithoutCancel(t.Context()), opts...)
		ctx, cancel := chromedp.NewContext(allocCtx)
		err := chromedp.Do(ctx) // starts the browser and opens its tab
		if err == nil {
			t.Cleanup(func() { cancel(); cancelAlloc() })
			return ctx
		}
		cancel()
		cancelAlloc()
		if attempt == 3 {
			t.Fatalf("chromium did not start (%d attempts): %v", attempt, err)
		}
		t.Logf("chromium did not start (attempt %d), starting it again: %v", attempt, err)
	}
}

// screenshot writes a full-page PNG of what the browser shows and logs
// where.
func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of the status page: %s (%d bytes)", path, len(png))
}

// TestStatusPageInABrowser runs the local Azure and jitd as processes and
// looks at jitd's status page in a real headless chromium: a grant shows
// while it is open and is gone from the grants once jitd has closed it (its
// close is then among the recent events); the page loads under its CSP
// with its inline style applied and no script.
func TestStatusPageInABrowser(t *testing.T) {
	la := startLocalAzure(t)
	ctx := newBrowser(t)
	dir := os.Getenv(EnvScreenshotDir)
	if dir == "" {
		dir = t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}

	p := webPolicy(t, 100)
	const rg = "e2e-status-page"
	nsgID := la.createNSG(t, rg, "nsg-web", p.Rules()...)
	d := la.startJitd(t, filepath.Join(t.TempDir(), "audit.jsonl"), "--resource-group", la.subscription()+"/"+rg,
		"--watch-interval", "1s")
	url := "http://" + d.Addr + "/status"

	// The browser's first load: headers as the browser received them.
	resp, err := chromedp.Run(ctx, chromedp.NavigateResponse(url))
	if err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	if resp.Status != 200 || fmt.Sprint(resp.Headers["Content-Security-Policy"]) != daemon.PageCSP ||
		fmt.Sprint(resp.Headers["X-Content-Type-Options"]) != "nosniff" {
		t.Errorf("response %d, headers %v", resp.Status, resp.Headers)
	}

	// A grant with a short expiry, written after jitd started, as the
	// provider writes it.
	spec, err := p.CheckGrant(jit.GrantInput{Ports: []int64{22}, Source: "203.0.113.77", Duration: "5m", Requester: "page@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	lo, _ := p.Band.GrantRange()
	exp := time.Now().Truncate(time.Second).Add(8 * time.Second)
	rule := p.GrantRule("pagegrant1", spec, exp, lo)
	if _, err := la.client.PutRule(t.Context(), nsgID, rule); err != nil {
		t.Fatal(err)
	}

	// sections loads the page afresh and splits it: what is open, and the
	// recent events.
	sections := func() (grants, events string) {
		if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
			t.Fatalf("loading %s: %v", url, err)
		}
		html, err := chromedp.Run(ctx, chromedp.OuterHTML("html"))
		if err != nil {
			t.Fatalf("reading the page: %v", err)
		}
		grants, events, _ = strings.Cut(html, `id="events"`)
		return grants, events
	}
	if err := poll(30*time.Second, func() bool {
		grants, _ := sections()
		return strings.Contains(grants, "pagegrant1") && strings.Contains(grants, "page@example.com")
	}); err != nil {
		t.Fatalf("the page never showed the open grant: %v\n%s", err, d.Logs())
	}
	if time.Now().Before(exp) {
		screenshot(t, ctx, dir, "status-page-grant-open.png")
	}
	grants, _ := sections()
	if !strings.Contains(grants, "203.0.113.77") || !strings.Contains(grants, ">open<") {
		t.Errorf("the open grant's row lacks its source or state:\n%s", grants)
	}

	// Inline style applies under the CSP; the page carries no script.
	style, err := chromedp.Run(ctx, chromedp.Evaluate[string](`getComputedStyle(document.querySelector("table")).borderCollapse`))
	if err != nil || style != "collapse" {
		t.Errorf("inline style under the CSP: %q, %v", style, err)
	}
	scripts, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.scripts.length`))
	if err != nil || scripts != 0 {
		t.Errorf("scripts on the page: %d, %v", scripts, err)
	}

	if err := poll(60*time.Second, func() bool {
		grants, events := sections()
		return !strings.Contains(grants, "pagegrant1") && strings.Contains(events, "pagegrant1") && strings.Contains(events, "expired")
	}); err != nil {
		t.Fatalf("the page still shows the grant after its expiry: %v\n%s", err, d.Logs())
	}
	screenshot(t, ctx, dir, "status-page-grant-closed.png")
	if la.reachable(t, nsgID, "203.0.113.77") {
		t.Error("the page says the grant is closed, but flow verification lets its source in")
	}
}
