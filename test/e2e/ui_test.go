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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/coder/websocket"

	"vers/api"
	"vers/internal/bearer"
	"vers/internal/poll"
	"vers/internal/tutorial"
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
	// Chromium makes a directory for its singleton socket under TMPDIR and
	// leaves it when it is ended: it gets one of the test's own, removed
	// once the browser is gone (its helpers can outlive it for a moment).
	tmp, err := os.MkdirTemp("", "vers-e2e-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1280, 800), chromedp.Env("TMPDIR="+tmp))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 10*time.Minute)
	t.Cleanup(func() {
		cancelTimeout()
		cancelCtx()
		cancelAlloc()
		rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := poll.Until(rctx, 50*time.Millisecond, func() (bool, error) { return os.RemoveAll(tmp) == nil, nil }); err != nil {
			t.Errorf("the browser's temporary directory %s stays: %v", tmp, err)
		}
	})
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

// typeLine types line and Enter in the terminal shown. The text is
// inserted as a keyboard of another script would, and Enter is a bare key
// press: xterm.js takes each once (a key event with its text is read
// twice, as the key and as the character).
func typeLine(t *testing.T, ctx context.Context, line string) {
	t.Helper()
	do(t, ctx, "type "+line, focusTerminal(),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, input.InsertText, input.InsertTextParams{Text: line})
			return err
		}),
		press("Enter", "Enter", 13, 0))
}

// focusTerminal gives the keys to the terminal shown: xterm.js reads them
// from a textarea it keeps out of sight.
func focusTerminal() chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[bool](`(document.querySelector(".screen:not([hidden]) textarea.xterm-helper-textarea").focus(), true)`)(ctx, t)
		return err
	})
}

// press is one key down and up, without text; modifiers as CDP has them
// (Ctrl is 2).
func press(key, code string, vk, modifiers int64) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		for _, typ := range []input.DispatchKeyEventType{input.DispatchKeyEventTypeRawKeyDown, input.DispatchKeyEventTypeKeyUp} {
			p := input.DispatchKeyEventParams{Type: typ, Key: key, Code: code, WindowsVirtualKeyCode: vk, NativeVirtualKeyCode: vk, Modifiers: modifiers}
			if _, err := cdp.Call(ctx, t, input.DispatchKeyEvent, p); err != nil {
				return err
			}
		}
		return nil
	})
}

// ctrlC is Ctrl-C in the terminal shown.
func ctrlC() chromedp.Action[chromedp.Void] { return press("c", "KeyC", 67, 2) }

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
	t.Logf("the page showed %s %.0f ms after the navigation began (the browser's start included)", root, float64(time.Since(start).Microseconds())/1000)
	if head := eval[bool](t, ctx, `!!document.querySelector('.node[data-alias="`+root+`"] .head')`); !head {
		t.Errorf("%s is HEAD of the project, and not marked so", root)
	}

	// The details pane names the VM it shows: wait for the one clicked.
	action := func(id, button string) chromedp.CSS {
		return chromedp.CSS(`#details[data-vm="` + id + `"] #` + button)
	}
	do(t, ctx, "branch from the page", chromedp.Click(node(root)), chromedp.WaitVisible(action(rootVM.ID, "act-branch")),
		chromedp.SetValue(chromedp.CSS(`#details[data-vm="`+rootVM.ID+`"] #branch-alias`), kid), chromedp.Click(action(rootVM.ID, "act-branch")))
	do(t, ctx, "see the child", chromedp.WaitVisible(chromedp.CSS(`.node[data-id="`+rootVM.ID+`"] + ul `+string(node(kid)))))
	child, ok := p.find(kid)
	if !ok || child.ParentID != rootVM.ID {
		t.Fatalf("vers status: %s is %+v, want a child of %s", kid, child, rootVM.ID)
	}
	if msg := eval[string](t, ctx, `document.getElementById("msg").textContent`); !strings.Contains(msg, "paused") {
		t.Errorf("after the branch the page says %q, want its figures", msg)
	}
	do(t, ctx, "see the branch's figures in the details",
		chromedp.Poll[chromedp.Void](`(t => t.includes("Last branch") && /Children\s+1\s/.test(t))(document.getElementById("info").innerText)`, chromedp.WithPollingTimeout(30*time.Second)))

	waitScreen := func(what string, re *regexp.Regexp) string {
		t.Helper()
		var text string
		deadline := time.Now().Add(time.Minute)
		for !re.MatchString(text) {
			if time.Now().After(deadline) {
				tab := eval[string](t, ctx, `(document.querySelector(".tab.active") || {className: "no tab shown"}).className`)
				t.Fatalf("timed out after 1m waiting for %s; the tab is %q and the screen shows:\n%s", what, tab, text)
			}
			time.Sleep(100 * time.Millisecond)
			text = eval[string](t, ctx, screenText)
		}
		return text
	}
	do(t, ctx, "open a terminal", chromedp.Click(node(kid)), chromedp.WaitVisible(action(child.ID, "act-terminal")),
		chromedp.Click(action(child.ID, "act-terminal")), chromedp.WaitVisible(chromedp.CSS(`.screen[data-vm="`+child.ID+`"]:not([hidden]) .xterm-rows`)))
	waitScreen("a prompt", regexp.MustCompile(`(?m)[#$] *$`))
	typeLine(t, ctx, "echo $((6*7))")
	waitScreen("42 on the screen", lines42)
	screenshot(t, ctx, "ui-terminal.png")

	// The size the guest's terminal has, as stty says; each question is
	// numbered, so its answer is told from the earlier ones.
	asked := 0
	sizeNow := func() string {
		t.Helper()
		asked++
		typeLine(t, ctx, fmt.Sprintf("echo size $(stty size) %d", asked))
		re := regexp.MustCompile(fmt.Sprintf(`(?m)^size (\d+ \d+) %d\s*$`, asked))
		return re.FindStringSubmatch(waitScreen("the size", re))[1]
	}
	before := sizeNow()
	do(t, ctx, "resize the window", chromedp.EmulateViewport(900, 560))
	waitFor(t, "the terminal to follow the window", 30*time.Second, func() bool { return sizeNow() != before })

	typeLine(t, ctx, "echo slee$((2+3)); sleep 300")
	waitScreen("the long command started", regexp.MustCompile(`(?m)^slee5\s*$`))
	do(t, ctx, "Ctrl-C", focusTerminal(), ctrlC())
	typeLine(t, ctx, "echo after-$((1+1))")
	waitScreen("the shell back after Ctrl-C", regexp.MustCompile(`(?m)^after-2\s*$`))

	do(t, ctx, "ask to kill the child", chromedp.Click(node(kid)), chromedp.WaitVisible(action(child.ID, "act-kill")),
		chromedp.Click(action(child.ID, "act-kill")), chromedp.WaitVisible(chromedp.ID("confirm-yes")))
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

	// Pause, resume and commit from the page.
	stateOf := func(alias string) string { v, _ := p.find(alias); return v.State }
	do(t, ctx, "pause", chromedp.Click(node(root)), chromedp.WaitVisible(action(rootVM.ID, "act-pause")),
		chromedp.Click(action(rootVM.ID, "act-pause")), chromedp.WaitVisible(chromedp.CSS(string(node(root))+` .state.paused`)))
	if st := stateOf(root); st != "paused" {
		t.Errorf("vers status: %s is %s after the page paused it", root, st)
	}
	do(t, ctx, "resume", chromedp.WaitVisible(action(rootVM.ID, "act-resume")),
		chromedp.Click(action(rootVM.ID, "act-resume")), chromedp.WaitVisible(chromedp.CSS(string(node(root))+` .state.running`)))
	tag := uniqueAlias(t, "uit")
	do(t, ctx, "commit", chromedp.SetValue(chromedp.CSS(`#details[data-vm="`+rootVM.ID+`"] #commit-tag`), tag),
		chromedp.Click(action(rootVM.ID, "act-commit")),
		chromedp.Poll[chromedp.Void](`document.getElementById("msg").textContent.startsWith("committed ")`, chromedp.WithPollingTimeout(5*time.Minute)))
	if out := p.must("commit", "ls"); !strings.Contains(out, tag) {
		t.Errorf("vers commit ls does not show the page's commit %s:\n%s", tag, out)
	}
	defer p.vers("commit", "rm", tag) // the daemon is shared with later tests

	// A change made elsewhere (the CLI) shows in the page within a second.
	other := uniqueAlias(t, "uic")
	p.must("branch", root, "--alias", other)
	branched := time.Now()
	do(t, ctx, "see the CLI's branch", chromedp.WaitVisible(node(other)))
	if d := time.Since(branched); d > time.Second {
		t.Errorf("the page showed the CLI's branch %s after it, want within 1s", d)
	} else {
		t.Logf("the page showed the CLI's branch %.0f ms after it returned", float64(d.Microseconds())/1000)
	}
	p.must("kill", "-r", root)
	do(t, ctx, "see the CLI's kill", chromedp.WaitNotPresent(node(root)))
}

// fakeAPI serves what the page asks of versd: the events (a hello with
// vms), the heads, and an exec that echoes what is typed, as a terminal
// does, says "resized ROWS COLS" at a resize and "^C" at a Ctrl-C.
func fakeAPI(t *testing.T, vms []api.VM) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		b, _ := json.Marshal(api.Event{Type: api.EventHello, Time: time.Now(), VMs: vms})
		conn.Write(r.Context(), websocket.MessageText, b)
		<-conn.CloseRead(r.Context()).Done()
	})
	mux.HandleFunc("GET /v1/heads", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode([]api.Head{{Dir: "/home/me/project", VMID: vms[len(vms)/2].ID}})
	})
	mux.HandleFunc("GET /v1/commits", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(fakeCommits(vms))
	})
	mux.HandleFunc("GET /v1/vms/{ref}/info", func(w http.ResponseWriter, r *http.Request) {
		for _, v := range vms {
			if v.ID == r.PathValue("ref") {
				json.NewEncoder(w).Encode(api.VMInfo{VM: v, Children: []string{}})
				return
			}
		}
		http.NotFound(w, r)
	})
	mux.HandleFunc("GET /v1/vms/{ref}/exec", func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		ctx := r.Context()
		_, msg, err := conn.Read(ctx)
		var req api.ExecRequest
		if err != nil || json.Unmarshal(msg, &req) != nil || !req.TTY || !req.Stdin || req.Command != "" || req.Rows == 0 || req.Cols == 0 {
			t.Errorf("exec request %s (%v): want a TTY login shell with stdin and a size", msg, err)
			return
		}
		started, _ := json.Marshal(api.ExecControl{Type: "started"})
		conn.Write(ctx, websocket.MessageText, started)
		out := func(s string) { conn.Write(ctx, websocket.MessageBinary, append([]byte{api.StreamStdout}, s...)) }
		out(fmt.Sprintf("size %d %d\r\n# ", req.Rows, req.Cols))
		for {
			typ, msg, err := conn.Read(ctx)
			if err != nil {
				return
			}
			if typ == websocket.MessageText {
				var c api.ExecControl
				if json.Unmarshal(msg, &c) == nil && c.Type == "resize" {
					out(fmt.Sprintf("\r\nresized %d %d\r\n# ", c.Rows, c.Cols))
				}
				continue
			}
			if len(msg) < 2 || msg[0] != api.StreamStdin {
				continue
			}
			in := strings.ReplaceAll(strings.ReplaceAll(string(msg[1:]), "\r", "\r\n"), "\x03", "^C")
			out(in)
		}
	})
	return mux
}

// servePage serves the page with api behind the guard, as versd does, and
// is a login URL.
func servePage(t *testing.T, api http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &ui.Guard{Addr: ln.Addr().String(), Token: bearer.NewMatcher(strings.Repeat("t", 32)), Sessions: ui.NewSessions(nil), API: api}
	srv := &http.Server{Handler: g}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	tok, _ := g.Sessions.NewLogin()
	return "http://" + g.Addr + "/ui/login?t=" + tok
}

// TestUIPageLoad: the page shows a tree of 50 VMs within a second of the
// navigation, with a clear layout (every VM a node under its parent,
// HEAD marked); its terminal speaks the exec protocol (typing, resize,
// Ctrl-C). The API is a fake: no VM is booted.
func TestUIPageLoad(t *testing.T) {
	ctx := browser(t)
	vms := fakeTree(50)
	login := servePage(t, fakeAPI(t, vms))

	do(t, ctx, "start the browser", chromedp.Navigate("about:blank"))
	start := time.Now()
	do(t, ctx, "load the page", chromedp.Navigate(login),
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
	nested := eval[int](t, ctx, `document.querySelectorAll("#tree .node[data-id]").length`)
	under := eval[bool](t, ctx, `!!document.querySelector('.node[data-id="`+vms[0].ID+`"] + ul .node[data-id="`+vms[1].ID+`"]')`)
	heads := eval[int](t, ctx, `document.querySelectorAll(".node .head").length`)
	if nested != len(vms) || !under || heads != 1 {
		t.Errorf("tree: %d nodes (want %d), child under its parent %v, %d HEAD marks (want 1)", nested, len(vms), under, heads)
	}
	screenshot(t, ctx, "ui-tree-50.png")

	// Two terminals, in tabs.
	for _, v := range []api.VM{vms[3], vms[7]} {
		do(t, ctx, "open a terminal in "+v.Alias, chromedp.Click(chromedp.CSS(`.node[data-id="`+v.ID+`"]`)),
			chromedp.WaitVisible(chromedp.CSS(`#details[data-vm="`+v.ID+`"] #act-terminal`)),
			chromedp.Click(chromedp.CSS(`#details[data-vm="`+v.ID+`"] #act-terminal`)),
			chromedp.WaitVisible(chromedp.CSS(`.screen[data-vm="`+v.ID+`"] .xterm-rows`)))
	}
	if tabs := eval[int](t, ctx, `document.querySelectorAll("#tabs .tab").length`); tabs != 2 {
		t.Fatalf("%d tabs, want 2", tabs)
	}
	wait := func(what, re string) {
		t.Helper()
		r := regexp.MustCompile(re)
		var text string
		defer func() {
			if t.Failed() {
				t.Logf("the screen:\n%s", text)
			}
		}()
		waitFor(t, what, 10*time.Second, func() bool { text = eval[string](t, ctx, screenText); return r.MatchString(text) })
	}
	wait("the size the terminal asked", `(?m)^size \d+ \d+\s*$`)
	typeLine(t, ctx, "echo $((6*7))")
	wait("the typing echoed", `(?m)^# echo \$\(\(6\*7\)\)\s*$`)
	do(t, ctx, "Ctrl-C", focusTerminal(), ctrlC())
	wait("Ctrl-C sent, once", `(?m)^# echo \$\(\(6\*7\)\) *\n\^C *$`)
	do(t, ctx, "resize the window", chromedp.EmulateViewport(900, 560))
	wait("a resize sent", `(?m)^resized \d+ \d+\s*$`)
}

// fakeCommits are a commit of every fifth VM, tagged.
func fakeCommits(vms []api.VM) []api.Commit {
	var out []api.Commit
	for i := 0; i < len(vms); i += 5 {
		out = append(out, api.Commit{
			ID: fmt.Sprintf("%064x", i+1), Kind: api.CommitKindCommit, Tags: []string{fmt.Sprintf("ready-%02d", i)},
			SourceVM: vms[i].ID, SourceAlias: vms[i].Alias, CreatedAt: vms[i].CreatedAt.Add(30 * time.Second),
			MemMiB: 512, VCPUs: 1, FsMiB: 1024, LogicalBytes: 1 << 30, AddedBytes: 40 << 20,
		})
	}
	return out
}

// layout measures the tree as drawn: nodes whose boxes overlap, nodes too
// small to read or whose name is cut, children not indented right of
// their parent or drawn above it, and the names' font size.
const layout = `(() => {
	const nodes = [...document.querySelectorAll("#tree .node")];
	const box = nodes.map((n) => n.getBoundingClientRect());
	let overlaps = 0, small = 0, cut = 0, misplaced = 0;
	for (let i = 0; i < box.length; i++) {
		for (let j = i + 1; j < box.length; j++) {
			const a = box[i], b = box[j];
			if (a.left < b.right - 0.5 && b.left < a.right - 0.5 && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5) overlaps++;
		}
		if (box[i].height < 16) small++;
		const name = nodes[i].querySelector(".name");
		if (!name || name.scrollWidth > name.clientWidth + 1 || name.getBoundingClientRect().width < 8) cut++;
		const parentLi = nodes[i].parentElement.parentElement.closest("li");
		if (parentLi) {
			const p = parentLi.firstElementChild.getBoundingClientRect();
			if (box[i].left <= p.left || box[i].top < p.bottom - 0.5) misplaced++;
		}
	}
	const font = nodes.length ? parseFloat(getComputedStyle(nodes[0].querySelector(".name")).fontSize) : 0;
	return {nodes: nodes.length, overlaps, small, cut, misplaced, font};
})()`

type treeLayout struct {
	Nodes, Overlaps, Small, Cut, Misplaced int
	Font                                   float64
}

// TestUILayout: with 1 VM and with 100 (and their commits), every node of
// the tree is drawn apart from the others, big enough to read, its name
// whole, each child indented under its parent. The API is a fake.
func TestUILayout(t *testing.T) {
	ctx := browser(t)
	for _, n := range []int{1, 100} {
		vms := fakeTree(n)
		login := servePage(t, fakeAPI(t, vms))
		want := n + len(fakeCommits(vms))
		do(t, ctx, fmt.Sprintf("load the page with %d VMs", n), chromedp.Navigate(login),
			chromedp.WaitVisible(chromedp.CSS(`.node[data-id="`+vms[n-1].ID+`"]`)),
			chromedp.Poll[chromedp.Void](fmt.Sprintf(`document.querySelectorAll("#tree .node").length === %d`, want), chromedp.WithPollingTimeout(10*time.Second)))
		l := eval[treeLayout](t, ctx, layout)
		t.Logf("%d VMs: %+v", n, l)
		if l.Nodes != want || l.Overlaps != 0 || l.Small != 0 || l.Cut != 0 || l.Misplaced != 0 || l.Font < 12 {
			t.Errorf("%d VMs and %d commits: %+v; want %d nodes, none overlapping, small, cut or misplaced, a font of 12px or more", n, want-n, l, want)
		}
		if n == 100 {
			screenshot(t, ctx, "ui-tree-100.png")
		}
	}
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

// TestUICompare: from the page, with real VMs — the HEAD of a named
// project directory moves (vers status there says so, the other
// directory's stays); a diff of two branches that differ by a file names
// it; a command across the tree comes back as a table with the agreeing
// VMs grouped; the console log shows what the guest wrote to its serial
// port; a commit appears as a node under its VM and a VM runs from it.
func TestUICompare(t *testing.T) {
	requireVMs(t)
	ctx := browser(t)
	p, other := newProject(t), newProject(t)
	p.must("init")
	other.must("init")
	root, a, b := uniqueAlias(t, "ucr"), uniqueAlias(t, "uca"), uniqueAlias(t, "ucb")
	p.must("run", "--vm-alias", root)
	other.must("checkout", root) // versd knows both directories now
	p.must("execute", root, "echo base > /root/notes")
	p.must("branch", root, "--alias", a)
	p.must("branch", root, "--alias", b)
	p.must("execute", a, "echo only in a > /root/only-in-a; echo a-line >> /root/notes")
	p.must("execute", root, "echo vers-console-mark > /dev/ttyS0")
	rootVM, _ := p.find(root)
	aVM, _ := p.find(a)
	bVM, _ := p.find(b)
	t.Cleanup(func() { p.vers("kill", "-r", root) })
	l := p.uiLogin()

	node := func(id string) chromedp.CSS { return chromedp.CSS(`.node[data-id="` + id + `"]`) }
	in := func(id, sel string) chromedp.CSS { return chromedp.CSS(`#details[data-vm="` + id + `"] ` + sel) }
	do(t, ctx, "log in and see the tree", chromedp.Navigate(l.URL), chromedp.WaitVisible(node(bVM.ID)))

	// Checkout: b becomes the HEAD of the other directory, by name.
	do(t, ctx, "check b out in the other directory", chromedp.Click(node(bVM.ID)), chromedp.WaitVisible(in(bVM.ID, "#checkout-dir")))
	dirs := eval[[]string](t, ctx, `[...document.querySelectorAll("#checkout-dir option")].map((o) => o.value)`)
	if !slices.Contains(dirs, other.dir) || !slices.Contains(dirs, p.dir) {
		t.Fatalf("the chooser lists %v, want both project directories %s and %s", dirs, p.dir, other.dir)
	}
	// The pane is drawn again for the HEAD that moved: in place, so that
	// the form's elements (a click on its way to one) stay.
	eval[bool](t, ctx, `(document.getElementById("diff-other").dataset.mark = "kept") === "kept"`)
	do(t, ctx, "choose the directory and check out", chromedp.SetValue(in(bVM.ID, "#checkout-dir"), other.dir),
		chromedp.Click(in(bVM.ID, "#act-checkout")),
		chromedp.WaitVisible(chromedp.CSS(`.node[data-id="`+bVM.ID+`"] .head[title="HEAD of `+other.dir+`"]`)),
		chromedp.Poll[chromedp.Void](`document.getElementById("info").innerText.includes("HEAD of")`, chromedp.WithPollingTimeout(10*time.Second)))
	if mark := eval[string](t, ctx, `document.getElementById("diff-other").dataset.mark || ""`); mark != "kept" {
		t.Errorf("the details pane was made anew when the HEAD moved, not updated in place")
	}
	if chosen := eval[string](t, ctx, `document.getElementById("checkout-dir").value`); chosen != other.dir {
		t.Errorf("the directory chooser went back to %q after the checkout, want %q", chosen, other.dir)
	}
	if v, _ := other.find(b); !v.Head {
		t.Errorf("vers status in %s: %s is not HEAD after the page's checkout", other.dir, b)
	}
	if v, _ := p.find(root); !v.Head {
		t.Errorf("vers status in %s: HEAD moved from %s, but the page moved the other directory's", p.dir, root)
	}
	if still := eval[bool](t, ctx, `!!document.querySelector('.node[data-id="`+rootVM.ID+`"] .head[title="HEAD of `+other.dir+`"]')`); still {
		t.Errorf("%s is still marked HEAD of %s", root, other.dir)
	}

	// The diff of b against a: a has a file b has not, and a line more in
	// another.
	do(t, ctx, "diff b and a", chromedp.SetValue(in(bVM.ID, "#diff-other"), aVM.ID),
		chromedp.Click(in(bVM.ID, "#diff-content")), chromedp.Click(in(bVM.ID, "#act-diff")),
		chromedp.WaitVisible(chromedp.CSS(`#diff-table tr[data-path="/root/only-in-a"]`)))
	if kind := eval[string](t, ctx, `document.querySelector('#diff-table tr[data-path="/root/only-in-a"]').dataset.kind`); kind != "added" {
		t.Errorf("/root/only-in-a is %q in the diff of %s to %s, want added", kind, b, a)
	}
	if kind := eval[string](t, ctx, `(document.querySelector('#diff-table tr[data-path="/root/notes"]') || {dataset: {}}).dataset.kind`); kind != "changed" {
		t.Errorf("/root/notes is %q in the diff, want changed", kind)
	}
	if stat := eval[string](t, ctx, `document.getElementById("diff-stat").textContent`); !strings.HasPrefix(stat, "1 added, 0 removed, 1 changed") {
		t.Errorf("the diff says %q, want 1 added, 0 removed, 1 changed", stat)
	}
	if text := eval[string](t, ctx, `document.getElementById("results").innerText`); !strings.Contains(text, "+a-line") {
		t.Errorf("the content diff lacks the file's line:\n%s", text)
	}

	// A command across root's tree: root and b agree, a differs.
	do(t, ctx, "run a command across the tree", chromedp.Click(node(rootVM.ID)), chromedp.WaitVisible(in(rootVM.ID, "#fan-cmd")),
		chromedp.SetValue(in(rootVM.ID, "#fan-cmd"), "cat /root/only-in-a 2>/dev/null || echo none"),
		chromedp.Click(in(rootVM.ID, "#act-fanout")), chromedp.WaitVisible(chromedp.ID("fan-table")))
	groups := eval[[][]string](t, ctx, `[...document.querySelectorAll("#fan-table tbody")].map((g) => [...g.querySelectorAll("tr[data-vm]")].map((r) => r.dataset.vm))`)
	want := [][]string{{rootVM.ID, bVM.ID}, {aVM.ID}}
	if fmt.Sprint(groups) != fmt.Sprint(want) {
		t.Errorf("the table's groups %v, want %v (root and b agree, a apart)", groups, want)
	}
	if lines := eval[int](t, ctx, `new Set([...document.querySelectorAll("#fan-table tr[data-vm]")].map((r) => Math.round(r.getBoundingClientRect().top))).size`); lines != 3 {
		t.Errorf("the table's 3 rows are drawn on %d lines", lines)
	}
	if text := eval[string](t, ctx, `document.getElementById("fan-table").innerText`); !strings.Contains(text, "none") || !strings.Contains(text, "only in a") {
		t.Errorf("the table lacks the outputs:\n%s", text)
	}
	screenshot(t, ctx, "ui-compare.png")

	// The console log.
	do(t, ctx, "show the console log", chromedp.Click(in(rootVM.ID, "#act-console")),
		chromedp.Poll[chromedp.Void](`(document.getElementById("console-log") || {textContent: ""}).textContent.includes("vers-console-mark")`, chromedp.WithPollingTimeout(30*time.Second)))

	// A commit: a node under its VM, and a VM started from it.
	tag, runner := uniqueAlias(t, "uct"), uniqueAlias(t, "ucx")
	slow, cancel := context.WithTimeout(ctx, 5*time.Minute) // a commit and a start under TCG
	defer cancel()
	do(t, slow, "commit root", chromedp.SetValue(in(rootVM.ID, "#commit-tag"), tag), chromedp.Click(in(rootVM.ID, "#act-commit")),
		chromedp.WaitVisible(chromedp.CSS(`.node[data-id="`+rootVM.ID+`"] + ul > li > .commitnode`)))
	cid := eval[string](t, ctx, `document.querySelector('.node[data-id="`+rootVM.ID+`"] + ul > li > .commitnode').dataset.commit`)
	if out := p.must("commit", "ls"); !strings.Contains(out, tag) || !strings.Contains(out, cid[:12]) {
		t.Errorf("vers commit ls lacks the page's commit %s (%s):\n%s", tag, cid[:12], out)
	}
	do(t, slow, "run from the commit", chromedp.Click(chromedp.CSS(`.commitnode[data-commit="`+cid+`"]`)),
		chromedp.WaitVisible(in("commit:"+cid, "#act-run-commit")), chromedp.SetValue(in("commit:"+cid, "#run-alias"), runner),
		chromedp.Click(in("commit:"+cid, "#act-run-commit")),
		chromedp.WaitVisible(chromedp.CSS(`.node[data-alias="`+runner+`"]`)))
	if v, ok := p.find(runner); !ok || v.State != api.StateRunning {
		t.Errorf("vers status: the VM run from the commit is %+v", v)
	}
	p.must("kill", runner)
	p.must("commit", "rm", cid)
	do(t, ctx, "see the commit go", chromedp.WaitNotPresent(chromedp.CSS(`.commitnode[data-commit="`+cid+`"]`)))
}

// TestUITutorialTree: the tutorial's seven VMs, branched with the CLI as
// the tutorial branches them (without its setup), in a project directory
// named as the tutorial's might be, drawn by the page each under its
// parent, HEAD marked; the screenshot is docs/ui-tree.png.
func TestUITutorialTree(t *testing.T) {
	requireVMs(t)
	ctx := browser(t)
	p := &project{t: t, dir: filepath.Join(t.TempDir(), "ecommerce")}
	if err := os.Mkdir(p.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	p.must("init")
	p.must("run", "--vm-alias", tutorial.Root)
	defer p.vers("kill", tutorial.Root, "-r")
	for _, m := range tutorial.Migrations {
		p.must("branch", "--alias", m.Alias)
	}
	p.must("checkout", tutorial.Premium)
	p.must("branch", "--alias", tutorial.Risky)
	p.must("checkout", tutorial.Risky)
	p.must("branch", "--alias", tutorial.ApproachA)
	p.must("branch", "--alias", tutorial.ApproachB)

	node := func(alias string) string { return `.node[data-alias="` + alias + `"]` }
	under := func(path ...string) chromedp.CSS {
		sel := make([]string, len(path))
		for i, a := range path {
			sel[i] = node(a)
		}
		return chromedp.CSS(strings.Join(sel, " + ul "))
	}
	l := p.uiLogin()
	do(t, ctx, "see the tutorial's tree", chromedp.Navigate(l.URL),
		chromedp.WaitVisible(under(tutorial.Root, tutorial.Premium, tutorial.Risky, tutorial.ApproachA)),
		chromedp.WaitVisible(under(tutorial.Root, tutorial.Premium, tutorial.Risky, tutorial.ApproachB)),
		chromedp.WaitVisible(under(tutorial.Root, tutorial.Inventory)),
		chromedp.WaitVisible(under(tutorial.Root, tutorial.Analytics)))
	// (Other tests' rows, dead VMs among them, may remain in the shared daemon: only
	// db-root's subtree counts.)
	if n := eval[int](t, ctx, `document.querySelectorAll('`+node(tutorial.Root)+` + ul .node[data-alias]').length`); n != 6 {
		t.Errorf("the page draws %d VMs below %s, want the tutorial's 6", n, tutorial.Root)
	}
	if head := eval[bool](t, ctx, `!!document.querySelector('`+node(tutorial.Risky)+` .head')`); !head {
		t.Errorf("%s is HEAD and not marked so", tutorial.Risky)
	}
	// The directory is named by the end of its path, not where it lives.
	if line := eval[string](t, ctx, `document.getElementById("heads").innerText`); !strings.Contains(line, "HEAD of ecommerce → "+tutorial.Risky) {
		t.Errorf("the HEAD line says %q", line)
	}
	do(t, ctx, "select db-root", chromedp.Click(chromedp.CSS(node(tutorial.Root))),
		chromedp.WaitVisible(chromedp.CSS(`#details[data-vm] #act-branch`)))
	screenshot(t, ctx, "ui-tree.png")
}
