package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"vers/api"
	"vers/internal/bearer"
	"vers/internal/ui"
)

// browser is a headless Chromium driven by chromedp: the one place that
// decides whether the UI tests can run, and says why not.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		why := "chromium is not installed (scripts/setup.sh installs it)"
		if os.Getenv("CI") != "" {
			t.Fatalf("cannot run the UI tests in CI: %s", why)
		}
		t.Skip(why)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 800))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 10*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	return ctx
}

// uiLogin is what `vers ui --format json` prints.
func (p *project) uiLogin() api.UILogin {
	p.t.Helper()
	var l api.UILogin
	if err := json.Unmarshal([]byte(p.must("ui", "--no-browser", "--format", "json")), &l); err != nil {
		p.t.Fatalf("vers ui json: %v", err)
	}
	return l
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func eval[T any](t *testing.T, ctx context.Context, js string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](js, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return v
}

// screenshot writes the page to docs/NAME when VERS_UI_SCREENSHOTS is set
// (the README shows them), and to the test's log directory otherwise.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := t.TempDir()
	if os.Getenv("VERS_UI_SCREENSHOTS") != "" {
		dir = filepath.Join("..", "..", "docs")
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s: %d bytes in %s", name, len(png), dir)
}

// TestUIAuth: nothing is served without the login; the login URL works
// once; in the page, a change with a wrong CSRF token is refused. No VM is
// needed.
func TestUIAuth(t *testing.T) {
	ctx := browser(t)
	p := newProject(t)
	p.must("init")
	l := p.uiLogin()
	base := "http://" + l.Addr
	for _, path := range []string{"/ui/", "/v1/vms", "/ui/vendor/xterm.js"} {
		res, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a session: %d, want 401", path, res.StatusCode)
		}
	}
	do(t, ctx, "log in", chromedp.Navigate(l.URL), chromedp.WaitVisible(chromedp.CSS("#conn.live")))
	if u := eval[string](t, ctx, `location.pathname`); u != "/ui/" {
		t.Fatalf("the login led to %s, want /ui/", u)
	}
	if c := eval[string](t, ctx, `document.cookie`); c != "" {
		t.Errorf("the page's script reads cookies %q: the session cookie must be HttpOnly", c)
	}
	refused := eval[[]int](t, ctx, `Promise.all([
		fetch("/v1/heads", {method: "PUT", headers: {"X-Vers-CSRF": "wrong", "Content-Type": "application/json"}, body: "{}"}).then(r => r.status),
		fetch("/v1/heads", {method: "PUT", headers: {"Content-Type": "application/json"}, body: "{}"}).then(r => r.status),
		fetch("/v1/vms").then(r => r.status),
	])`)
	if fmt.Sprint(refused) != "[403 403 200]" {
		t.Errorf("wrong CSRF, no CSRF, a read: %v, want [403 403 200]", refused)
	}
	// The URL was used: nobody can use it again.
	res, err := http.Get(l.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Errorf("the login URL a second time: %d, want 401", res.StatusCode)
	}
}

var lines42 = regexp.MustCompile(`(?m)^42\s*$`)

// screenText is the text of the terminal shown.
const screenText = `(document.querySelector(".screen:not([hidden]) .xterm-rows") || {innerText: ""}).innerText.replace(/\u00a0/g, " ")`

// TestUI: a VM the CLI started appears in the tree; it is branched from
// the page and the child appears there and in vers status; a terminal in
// the child runs a command, follows a resize and a Ctrl-C; the child is
// killed from the page after a confirmation that names it.
func TestUI(t *testing.T) {
	requireVMs(t)
	ctx := browser(t)
	p := newProject(t)
	p.must("init")
	root, kid := uniqueAlias(t, "uir"), uniqueAlias(t, "uik")
	p.must("run", "--vm-alias", root)
	rootVM, _ := p.find(root)
	l := p.uiLogin()

	node := func(alias string) chromedp.CSS { return chromedp.CSS(`.node[data-alias="` + alias + `"]`) }
	start := time.Now()
	do(t, ctx, "log in and see the tree", chromedp.Navigate(l.URL), chromedp.WaitVisible(node(root)))
	t.Logf("the page showed %s %.0f ms after the navigation began", root, float64(time.Since(start).Microseconds())/1000)
	if head := eval[bool](t, ctx, `!!document.querySelector('.node[data-alias="`+root+`"] .head')`); !head {
		t.Errorf("%s is HEAD of the project, and not marked so", root)
	}

	do(t, ctx, "branch from the page", chromedp.Click(node(root)), chromedp.WaitVisible(chromedp.ID("act-branch")),
		chromedp.SetValue(chromedp.ID("branch-alias"), kid), chromedp.Click(chromedp.ID("act-branch")))
	do(t, ctx, "see the child", chromedp.WaitVisible(chromedp.CSS(`.node[data-id="`+rootVM.ID+`"] + ul `+string(node(kid)))))
	child, ok := p.find(kid)
	if !ok || child.ParentID != rootVM.ID {
		t.Fatalf("vers status: %s is %+v, want a child of %s", kid, child, rootVM.ID)
	}
	if msg := eval[string](t, ctx, `document.getElementById("msg").textContent`); !strings.Contains(msg, "paused") {
		t.Errorf("after the branch the page says %q, want its figures", msg)
	}
	screenshot(t, ctx, "ui-tree.png")

	type_ := func(what, keys string) {
		t.Helper()
		do(t, ctx, what, chromedp.SendKeys(chromedp.CSS(".screen:not([hidden]) textarea.xterm-helper-textarea"), keys))
	}
	waitScreen := func(what string, re *regexp.Regexp) string {
		t.Helper()
		var text string
		waitFor(t, what, time.Minute, func() bool {
			text = eval[string](t, ctx, screenText)
			return re.MatchString(text)
		})
		return text
	}
	do(t, ctx, "open a terminal", chromedp.Click(node(kid)), chromedp.WaitVisible(chromedp.ID("act-terminal")),
		chromedp.Click(chromedp.ID("act-terminal")), chromedp.WaitVisible(chromedp.CSS(".screen:not([hidden]) .xterm-rows")))
	waitScreen("a prompt", regexp.MustCompile(`[#$] *$`))
	type_("type a command", "echo $((6*7))\r")
	waitScreen("42 on the screen", lines42)
	screenshot(t, ctx, "ui-terminal.png")

	// The size the guest's terminal has, as stty says; each question is
	// numbered, so its answer is told from the earlier ones.
	asked := 0
	sizeNow := func() string {
		t.Helper()
		asked++
		type_("ask the size", fmt.Sprintf("echo size $(stty size) %d\r", asked))
		re := regexp.MustCompile(fmt.Sprintf(`(?m)^size (\d+ \d+) %d\s*$`, asked))
		return re.FindStringSubmatch(waitScreen("the size", re))[1]
	}
	before := sizeNow()
	do(t, ctx, "resize the window", chromedp.EmulateViewport(900, 560))
	waitFor(t, "the terminal to follow the window", 30*time.Second, func() bool { return sizeNow() != before })

	type_("start a long command", "sleep 300\r")
	do(t, ctx, "Ctrl-C", chromedp.KeyEvent("c", chromedp.KeyModifiers(chromedp.ModifierCtrl)))
	type_("a command after it", "echo after-$((1+1))\r")
	waitScreen("the shell back after Ctrl-C", regexp.MustCompile(`(?m)^after-2\s*$`))

	do(t, ctx, "ask to kill the child", chromedp.Click(node(kid)), chromedp.WaitVisible(chromedp.ID("act-kill")),
		chromedp.Click(chromedp.ID("act-kill")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
	if names := eval[string](t, ctx, `document.getElementById("confirm-list").innerText`); !strings.Contains(names, kid) || strings.Contains(names, root) {
		t.Errorf("the confirmation names %q: want %s and not %s", names, kid, root)
	}
	do(t, ctx, "kill the child", chromedp.Click(chromedp.ID("confirm-yes")), chromedp.WaitNotPresent(node(kid)))
	if _, ok := p.find(kid); ok {
		t.Errorf("vers status still shows %s after the kill", kid)
	}
	if _, ok := p.find(root); !ok {
		t.Errorf("the kill of %s took %s too", kid, root)
	}
	p.must("kill", root)
}

// TestUIPageLoad: the page, served by the guard as versd serves it, shows
// a tree of 50 VMs within a second of the navigation, and keeps a clear
// layout (every VM a node under its parent). The API is a fake that
// answers the events with that tree, so no VM is booted.
func TestUIPageLoad(t *testing.T) {
	ctx := browser(t)
	vms := fakeTree(50)
	events := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/events":
			conn, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer conn.CloseNow()
			b, _ := json.Marshal(api.Event{Type: api.EventHello, Time: time.Now(), VMs: vms})
			conn.Write(r.Context(), websocket.MessageText, b)
			conn.CloseRead(r.Context())
			<-r.Context().Done()
		case "/v1/heads":
			json.NewEncoder(w).Encode([]api.Head{{Dir: "/home/me/project", VMID: vms[7].ID}})
		default:
			http.NotFound(w, r)
		}
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &ui.Guard{Addr: ln.Addr().String(), Token: bearer.NewMatcher(strings.Repeat("t", 32)), Sessions: ui.NewSessions(nil), API: events}
	srv := &http.Server{Handler: g}
	go srv.Serve(ln)
	defer srv.Close()
	tok, _ := g.Sessions.NewLogin()

	do(t, ctx, "start the browser", chromedp.Navigate("about:blank"))
	start := time.Now()
	do(t, ctx, "load the page", chromedp.Navigate("http://"+g.Addr+"/ui/login?t="+tok),
		chromedp.WaitVisible(chromedp.CSS(`.node[data-id="`+vms[len(vms)-1].ID+`"]`)))
	took := time.Since(start)
	// The page's own measure: from the start of the navigation (the login
	// and its redirect included) to the first tree drawn.
	drawn := eval[float64](t, ctx, `performance.getEntriesByName("vers-tree")[0].startTime`)
	t.Logf("%d VMs: the page drew the tree %.0f ms after the navigation began (%.0f ms as the test saw it)",
		len(vms), drawn, float64(took.Microseconds())/1000)
	if drawn > 1000 {
		t.Errorf("the page took %.0f ms to show %d VMs, want at most 1000", drawn, len(vms))
	}
	do(t, ctx, "see HEAD marked", chromedp.WaitVisible(chromedp.CSS(".node .head")))
	nested := eval[int](t, ctx, `document.querySelectorAll("#tree .node").length`)
	under := eval[bool](t, ctx, `!!document.querySelector('.node[data-id="`+vms[0].ID+`"] + ul .node[data-id="`+vms[1].ID+`"]')`)
	heads := eval[int](t, ctx, `document.querySelectorAll(".node .head").length`)
	if nested != len(vms) || !under || heads != 1 {
		t.Errorf("tree: %d nodes (want %d), child under its parent %v, %d HEAD marks (want 1)", nested, len(vms), under, heads)
	}
	screenshot(t, ctx, "ui-tree-50.png")
}

// fakeTree is n VMs: a root with branches, some of them branched again.
func fakeTree(n int) []api.VM {
	vms := make([]api.VM, n)
	now := time.Now().Add(-time.Hour)
	states := []string{api.StateRunning, api.StateRunning, api.StateRunning, api.StatePaused}
	for i := range vms {
		vms[i] = api.VM{
			ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i+1, i+1), Alias: fmt.Sprintf("vm-%02d", i),
			State: states[i%len(states)], MemMiB: 512, VCPUs: 1, FsMiB: 1024, CreatedAt: now.Add(time.Duration(i) * time.Minute),
		}
		if i > 0 {
			vms[i].ParentID = vms[(i-1)/3].ID
		}
	}
	return vms
}
