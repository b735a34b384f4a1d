package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath finds Debian's headless Chromium, installing it with
// scripts/toolchains.sh browser when it is missing (as the SDK conformance
// test installs the guest toolchains).
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	out, err := exec.Command(filepath.Join("..", "scripts", "toolchains.sh"), "browser").CombinedOutput()
	if p, lookErr := exec.LookPath("chromium"); lookErr == nil {
		return p
	}
	t.Fatalf("the dashboard test needs Chromium and scripts/toolchains.sh browser could not install it (%v); "+
		"run it as root (or with sudo) on Debian 12:\n%s", err, out)
	return ""
}

// browser starts headless Chromium for one test; it is killed when the
// test ends.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // the tests run as root in CI
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-first-run", true),
		chromedp.WindowSize(1280, 900),
	)
	if allTLS() {
		// The suite's self-signed certificate, which Chromium's own
		// store does not hold (WASMTASK_E2E_TLS=1).
		opts = append(opts, chromedp.Flag("ignore-certificate-errors", true))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// run runs browser actions with a deadline, failing the test with what was
// being done.
func run(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := chromedp.Do(c, actions...); err != nil {
		t.Fatalf("%s: %v\npage text:\n%s", what, err, pageText(ctx))
	}
}

// pageText is what the page shows, for a failure message.
func pageText(ctx context.Context) string {
	c, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	txt, err := chromedp.Run(c, chromedp.Evaluate[string](`location.href + "\n" + document.body.innerText`))
	if err != nil {
		return "(cannot read the page: " + err.Error() + ")"
	}
	return tail(txt, 2000)
}

// value runs one browser action that returns a value.
func value[T any](t *testing.T, ctx context.Context, what string, action chromedp.Action[T]) T {
	t.Helper()
	c, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	v, err := chromedp.Run(c, action)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

func css(sel string) chromedp.CSS { return chromedp.CSS(sel) }

// TestDashboard drives the dashboard at /ui/ in headless Chromium against a
// real server with a token: refused without the token, signs in, sees a
// task appear and complete without a reload, reads a failed task's error and
// log, cancels a running task and rolls back a plugin.
func TestDashboard(t *testing.T) {
	ctx := browser(t)
	s := startServer(t, serverOpts{token: "s3cret", extra: []string{"--history-interval", "250ms"}})
	s.deploy("noop", module(t, "noop"))
	s.deploy("logfail", module(t, "logfail"))
	s.deploy("loop", hostModule(t, "loop"))
	v1 := s.deploy("swap", module(t, "swap_v1"))
	if v2 := s.deploy("swap", module(t, "swap_v2")); v2 == v1 {
		t.Fatal("swap_v1 and swap_v2 have the same version")
	}
	ui := s.URL + "/ui/"

	// On failure, keep screenshots of the overview and the page on screen.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		dir, err := os.MkdirTemp("", "wasmtask-ui-"+t.Name()+"-")
		if err != nil {
			return
		}
		for _, shot := range []struct{ name, url string }{{"current", ""}, {"overview", ui + "#/"}, {"task", ui + "#/task/fails"}} {
			c, cancel := context.WithTimeout(ctx, 10*time.Second)
			if shot.url != "" {
				chromedp.Do(c, chromedp.Navigate(shot.url), chromedp.Sleep(1500*time.Millisecond))
			}
			if png, err := chromedp.Run(c, chromedp.FullScreenshot(100)); err == nil {
				os.WriteFile(filepath.Join(dir, shot.name+".png"), png, 0o644)
			}
			cancel()
		}
		t.Logf("screenshots of the dashboard: %s", dir)
	})

	t.Run("no token, no data", func(t *testing.T) {
		run(t, ctx, "open /ui/ without a token",
			chromedp.Navigate(ui),
			chromedp.WaitVisible(css("#login")))
		status := value(t, ctx, "fetch /v1/engine", chromedp.Evaluate[int](`fetch("/v1/engine").then(r => r.status)`, chromedp.EvalAwaitPromise))
		overview := value(t, ctx, "look for the overview", chromedp.Evaluate[bool](`document.getElementById("overview") !== null`))
		if status != 401 || overview {
			t.Fatalf("without a token: /v1/engine answered %d and the overview is shown: %v", status, overview)
		}
		run(t, ctx, "sign in with a wrong token",
			chromedp.SendKeys(css("#token"), "wrong"),
			chromedp.Click(css(`#login button[type="submit"]`)),
			chromedp.WaitVisible(css("#login-error")))
		if msg := value(t, ctx, "read the login error", chromedp.Text(css("#login-error"))); !strings.Contains(msg, "refused") {
			t.Fatalf("a wrong token shows %q, want it refused", msg)
		}
	})

	t.Run("sign in", func(t *testing.T) {
		run(t, ctx, "sign in with the token",
			chromedp.SetValue(css("#token"), "s3cret"),
			chromedp.Click(css(`#login button[type="submit"]`)),
			chromedp.WaitVisible(css("#overview")),
			chromedp.WaitVisible(css("#chart")))
		if tasks := value(t, ctx, "read the task count", chromedp.Text(css("#card-tasks .n"))); tasks != "0" {
			t.Fatalf("overview shows %q tasks, want 0", tasks)
		}
	})

	t.Run("a task appears and completes without a reload", func(t *testing.T) {
		run(t, ctx, "open the task list",
			chromedp.Navigate(ui+"#/tasks"),
			chromedp.WaitVisible(css("#task-table")))
		value(t, ctx, "mark the document", chromedp.Evaluate[string](`window.__sameDocument = "yes"`))
		if r := s.do("POST", "/v1/tasks", map[string]any{"id": "live-1", "handler": "noop", "input": "x"}); r.status != 201 {
			t.Fatalf("submit: HTTP %d %s", r.status, r.body)
		}
		run(t, ctx, "wait for the task to show as completed",
			chromedp.WaitVisible(css(`tr[data-id="live-1"] [data-state="completed"]`)))
		if same := value(t, ctx, "read the mark", chromedp.Evaluate[string](`window.__sameDocument || ""`)); same != "yes" {
			t.Fatal("the page reloaded to show the task")
		}
	})

	t.Run("a failed task shows its error and log", func(t *testing.T) {
		if r := s.do("POST", "/v1/tasks", map[string]any{"id": "fails", "handler": "logfail", "input": "x"}); r.status != 201 {
			t.Fatalf("submit: HTTP %d %s", r.status, r.body)
		}
		if v := s.waitFinal("fails", 30*time.Second); v.State != "failed" {
			t.Fatalf("task fails ended %s", v.State)
		}
		run(t, ctx, "open the failed task",
			chromedp.Navigate(ui+"#/task/fails"),
			chromedp.WaitVisible(css(`#task h1 [data-state="failed"]`)))
		if errText := value(t, ctx, "read the error", chromedp.Text(css(".attempt-error"))); !strings.Contains(errText, "order total is negative") {
			t.Errorf("the attempt's error reads %q", errText)
		}
		if logText := value(t, ctx, "read the log", chromedp.Text(css(".attempt-log"))); !strings.Contains(logText, "checking the order total") {
			t.Errorf("the attempt's log reads %q", logText)
		}
		// Retry it now: a new attempt runs (and fails the same way).
		run(t, ctx, "retry it", chromedp.Click(css("#retry:not([disabled])")))
		waitFor(t, 20*time.Second, "the retried task failing again", func() bool {
			v := s.do("GET", "/v1/tasks/fails", nil).view(t)
			return v.Retries == 1 && v.State == "failed" && len(attempts(v)) == 2
		})
		run(t, ctx, "see the second attempt", chromedp.WaitVisible(css("#attempts tbody tr:nth-child(2) .attempt-error")))
	})

	t.Run("cancel a running task", func(t *testing.T) {
		if r := s.do("POST", "/v1/tasks", map[string]any{"id": "spin", "handler": "loop", "input": "x", "timeout": "30s"}); r.status != 201 {
			t.Fatalf("submit: HTTP %d %s", r.status, r.body)
		}
		waitFor(t, 20*time.Second, "task spin running", func() bool {
			return s.do("GET", "/v1/tasks/spin", nil).view(t).State == "running"
		})
		run(t, ctx, "open the running task",
			chromedp.Navigate(ui+"#/task/spin"),
			chromedp.WaitVisible(css(`#task h1 [data-state="running"]`)))
		value(t, ctx, "accept the confirmation", chromedp.Evaluate[bool](`(window.confirm = () => true, true)`))
		run(t, ctx, "cancel it",
			chromedp.Click(css("#cancel:not([disabled])")),
			chromedp.WaitVisible(css(`#task h1 [data-state="canceled"]`)))
		if v := s.waitFinal("spin", 10*time.Second); v.State != "canceled" {
			t.Fatalf("task spin is %s after the cancel", v.State)
		}
	})

	t.Run("deploy a plugin by upload", func(t *testing.T) {
		file := filepath.Join(t.TempDir(), "echo.wasm")
		if err := os.WriteFile(file, hostModule(t, "echo"), 0o644); err != nil {
			t.Fatal(err)
		}
		run(t, ctx, "upload echo.wasm",
			chromedp.Navigate(ui+"#/plugins"),
			chromedp.WaitVisible(css("#deploy")),
			chromedp.SendKeys(css(`#deploy input[name="name"]`), "uploaded"),
			chromedp.SetUploadFiles(css(`#deploy input[name="module"]`), []string{file}),
			chromedp.Click(css(`#deploy button[type="submit"]`)),
			// The row shows as soon as the deploy starts (the plugin is
			// listed while it compiles); wait for its active version.
			chromedp.WaitVisible(css(`tr[data-plugin="uploaded"] td.active-version[title^="sha256:"]`)))
		r := s.do("POST", "/v1/tasks", map[string]any{"handler": "uploaded", "input": "through the browser"})
		if r.status != 201 {
			t.Fatalf("submit to the uploaded plugin: HTTP %d %s", r.status, r.body)
		}
		if v := s.waitFinal(r.view(t).ID, 30*time.Second); v.State != "completed" || v.Output == nil || *v.Output != "THROUGH THE BROWSER" {
			t.Fatalf("the uploaded plugin (echo: upper-cases) ran: %s %q", v.State, deref(v.Output))
		}
	})

	t.Run("roll back a plugin", func(t *testing.T) {
		run(t, ctx, "roll back swap",
			chromedp.Navigate(ui+"#/plugins"),
			chromedp.WaitVisible(css(`tr[data-plugin="swap"]`)),
			chromedp.Click(css(`tr[data-plugin="swap"] button.rollback`)),
			chromedp.WaitVisible(css(fmt.Sprintf(`tr[data-plugin="swap"] td.active-version[title=%q]`, v1))))
		short := strings.TrimPrefix(v1, "sha256:")[:12]
		if shown := value(t, ctx, "read the active version", chromedp.Text(css(`tr[data-plugin="swap"] td.active-version`))); shown != short {
			t.Errorf("the plugins page shows %q active, want %q", shown, short)
		}
		var info struct {
			Active string `json:"active"`
		}
		if r := s.do("GET", "/v1/plugins/swap", nil); r.status != 200 || json.Unmarshal(r.body, &info) != nil {
			t.Fatalf("GET /v1/plugins/swap: HTTP %d %s", r.status, r.body)
		}
		if info.Active != v1 {
			t.Fatalf("after the rollback the server's active version is %s, want %s", info.Active, v1)
		}
	})

	// WASMTASK_UI_SCREENSHOTS=DIR saves the pages as the README shows them
	// (docs/dashboard.png comes from this run).
	if dir := os.Getenv("WASMTASK_UI_SCREENSHOTS"); dir != "" {
		for i := range 20 {
			s.do("POST", "/v1/tasks", map[string]any{"handler": "noop", "input": "x", "labels": map[string]string{"batch": fmt.Sprint(i % 3)}})
		}
		s.do("POST", "/v1/tasks", map[string]any{"id": "nightly-report", "handler": "noop", "input": "x", "run_policy": map[string]any{"cron": map[string]any{"expr": "0 0 3 * * *"}}})
		s.do("POST", "/v1/tasks", map[string]any{"id": "publish", "handler": "noop", "input": "x", "after": []string{"live-1", "fails"}})
		for _, shot := range []struct{ name, frag string }{{"dashboard", "#/"}, {"dashboard-task", "#/task/fails"}, {"dashboard-tasks", "#/tasks"}, {"dashboard-graph", "#/task/publish"}} {
			run(t, ctx, "open "+shot.frag, chromedp.Navigate(ui+shot.frag), chromedp.Sleep(1500*time.Millisecond))
			png := value(t, ctx, "screenshot "+shot.frag, chromedp.FullScreenshot(100))
			if err := os.WriteFile(filepath.Join(dir, shot.name+".png"), png, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func deref(s *string) string {
	if s == nil {
		return "<nil>"
	}
	return *s
}
