package daemon

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"vers/api"
	"vers/client"
	"vers/internal/errdefs"
	"vers/internal/image"
)

// fakeStore is an image store whose builds the test drives: each prints the
// lines sent on lines and ends when lines is closed (with err, if set) or
// when its context ends.
type fakeStore struct {
	lines   chan string
	started chan bool  // force, as each build starts
	ended   chan error // each build's result, as it ends

	mu     sync.Mutex
	err    error
	built  map[string]image.Info
	builds int
}

func newFakeStore() *fakeStore {
	return &fakeStore{
		lines: make(chan string), started: make(chan bool, 10), ended: make(chan error, 10),
		built: map[string]image.Info{},
	}
}

var _ ImageStore = (*fakeStore)(nil)

func (f *fakeStore) Names() []string { return []string{"default.bin", "default"} }

func (f *fakeStore) Get(name string) (image.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if name != "default.bin" && name != "default" {
		return image.Info{}, fmt.Errorf("image %q: %w", name, image.ErrUnknown)
	}
	info, ok := f.built[name]
	if !ok {
		return image.Info{}, fmt.Errorf("image %s: %w", name, image.ErrNotBuilt)
	}
	return info, nil
}

func (f *fakeStore) List() ([]image.Status, error) {
	var out []image.Status
	for _, name := range f.Names() {
		st := image.Status{Name: name, Kind: image.KindRootfs, State: image.StateMissing}
		if info, err := f.Get(name); err == nil {
			st.State, st.Info = image.StateBuilt, info
		}
		out = append(out, st)
	}
	return out, nil
}

func (f *fakeStore) Build(ctx context.Context, name string, force bool, progress io.Writer) (image.Info, error) {
	f.mu.Lock()
	f.builds++
	n := f.builds
	f.mu.Unlock()
	f.started <- force
	for {
		select {
		case line, ok := <-f.lines:
			if ok {
				fmt.Fprintf(progress, "[%s] %s\n", name, line)
				continue
			}
			f.mu.Lock()
			err := f.err
			info := image.Info{Name: name, Kind: image.KindRootfs, SizeMiB: 272, Recipe: fmt.Sprintf("r%d", n), Built: time.Unix(1_700_000_000, 0).UTC()}
			if err == nil {
				f.built[name] = info
			}
			f.mu.Unlock()
			f.ended <- err
			if err != nil {
				return image.Info{}, err
			}
			return info, nil
		case <-ctx.Done():
			f.ended <- ctx.Err()
			return image.Info{}, ctx.Err()
		}
	}
}

func (f *fakeStore) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.builds
}

// imageServer serves the API's image routes on store over a unix socket.
type imageServer struct {
	images *Images
	stop   context.CancelFunc // the daemon's context
	client *client.Client
	http   *http.Client // raw requests, to read the wire
}

func newImageServer(t *testing.T, store ImageStore) *imageServer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{images: NewImages(ctx, store), log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	sock := serveOnSocket(t, s)
	// First (cleanups run last in, first out): the builds a failed test
	// left end, and with them the requests that srv.Close waits for.
	t.Cleanup(cancel)
	raw := socketHTTP(sock)
	return &imageServer{images: s.images, stop: cancel, client: client.New(sock), http: raw}
}

// post sends a build request and returns the response's status, type and
// lines.
func (s *imageServer) post(t *testing.T, path string) (int, string, []string) {
	t.Helper()
	resp, err := s.http.Post("http://versd"+path, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), lines
}

// feed sends lines to the builds, then ends them.
func feed(f *fakeStore, lines ...string) {
	for _, l := range lines {
		f.lines <- l
	}
	close(f.lines)
}

func TestBuildImageStream(t *testing.T) {
	f := newFakeStore()
	s := newImageServer(t, f)
	go feed(f, "one", "two")
	status, ctype, lines := s.post(t, "/v1/images/default/build")
	want := []string{
		`{"progress":"[default] one"}`,
		`{"progress":"[default] two"}`,
		`{"image":{"name":"default","kind":"rootfs","status":"built","size_mib":272,"built":"2023-11-14T22:13:20Z","recipe":"r1"}}`,
	}
	if status != http.StatusOK || ctype != "application/x-ndjson" || strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%d %s:\n%s\nwant:\n%s", status, ctype, strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	if force := <-f.started; force {
		t.Fatal("a build that was not asked to be forced was")
	}

	// Built now: answered at once, without a build.
	if _, _, lines := s.post(t, "/v1/images/default/build"); len(lines) != 1 || !strings.HasPrefix(lines[0], `{"image":{"name":"default"`) || f.count() != 1 {
		t.Fatalf("second request: %q after %d builds", lines, f.count())
	}
	// Unless forced.
	f.lines = make(chan string)
	go feed(f)
	if _, _, lines := s.post(t, "/v1/images/default/build?force=true"); len(lines) != 1 || !strings.Contains(lines[0], `"recipe":"r2"`) || !<-f.started || f.count() != 2 {
		t.Fatalf("forced: %q after %d builds", lines, f.count())
	}
}

func TestBuildImageErrors(t *testing.T) {
	f := newFakeStore()
	s := newImageServer(t, f)
	for _, path := range []string{"/v1/images/no-such/build", "/v1/images/default/build?force=yes"} {
		status, _, lines := s.post(t, path)
		var e api.Error
		if status != http.StatusBadRequest || len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &e) != nil || e.Code != api.CodeInvalid {
			t.Errorf("%s: %d %q, want 400 invalid", path, status, lines)
		}
	}
	if _, err := s.client.BuildImage(context.Background(), "no-such", false, nil); !errors.Is(err, errdefs.ErrInvalid) || !strings.Contains(err.Error(), "known: default.bin, default") {
		t.Errorf("client, unknown image: %v", err)
	}

	for _, tc := range []struct {
		err  error
		code string
	}{
		{fmt.Errorf("building default needs debootstrap; install with: apt-get install debootstrap: %w", image.ErrMissingTool), api.CodeUnavailable},
		{errors.New("build default: mkfs.ext4: disk full"), api.CodeInternal},
	} {
		f.lines, f.err = make(chan string), tc.err
		go feed(f, "step")
		status, _, lines := s.post(t, "/v1/images/default/build")
		var last api.BuildEvent
		if status != http.StatusOK || len(lines) != 2 || json.Unmarshal([]byte(lines[1]), &last) != nil || last.Error == nil {
			t.Fatalf("%v: %d %q", tc.err, status, lines)
		}
		if last.Error.Code != tc.code || last.Error.Message != errdefs.Message(tc.err) {
			t.Errorf("%v: error %+v, want code %s", tc.err, last.Error, tc.code)
		}
	}
	f.lines, f.err = make(chan string), fmt.Errorf("x: %w", image.ErrMissingTool)
	go feed(f)
	_, err := s.client.BuildImage(context.Background(), "default", false, nil)
	if !errors.Is(err, errdefs.ErrUnavailable) {
		t.Errorf("client, missing tool: %v, want the unavailable kind", err)
	}
}

// lineSink is a progress writer that hands each line to the test.
type lineSink chan string

func (l lineSink) Write(p []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(p), "\n") {
		if line != "" {
			l <- strings.TrimSuffix(line, "\n")
		}
	}
	return len(p), nil
}

func (l lineSink) expect(t *testing.T, who string, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-l:
			if got != w {
				t.Fatalf("%s saw %q, want %q", who, got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s did not see %q", who, w)
		}
	}
}

type buildResult struct {
	img api.Image
	err error
}

func (s *imageServer) start(ctx context.Context, force bool, progress io.Writer) chan buildResult {
	done := make(chan buildResult, 1)
	go func() {
		img, err := s.client.BuildImage(ctx, "default", force, progress)
		done <- buildResult{img, err}
	}()
	return done
}

func result(t *testing.T, who string, done chan buildResult) buildResult {
	t.Helper()
	select {
	case r := <-done:
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("%s did not end", who)
		return buildResult{}
	}
}

// TestBuildImageShared: two clients and a VM create that want the same
// image share one build, and all see its progress from its start.
func TestBuildImageShared(t *testing.T) {
	f := newFakeStore()
	s := newImageServer(t, f)
	ctx := context.Background()

	a := make(lineSink, 10)
	aDone := s.start(ctx, false, a)
	<-f.started
	f.lines <- "one"
	a.expect(t, "A", "[default] one")

	b := make(lineSink, 10)
	bDone := s.start(ctx, true, b) // forced: joins the build under way, which is new
	b.expect(t, "B", "[default] one")

	create := make(chan error, 1)
	go func() {
		_, err := s.images.Ensure(ctx, "default", nil) // as the vm domain asks
		create <- err
	}()
	waitUntil(t, "three waiters", func() bool { return s.images.waiting("default") == 3 })

	feed(f, "two")
	a.expect(t, "A", "[default] two")
	b.expect(t, "B", "[default] two")
	for who, done := range map[string]chan buildResult{"A": aDone, "B": bDone} {
		if r := result(t, who, done); r.err != nil || r.img.Name != "default" || r.img.Status != api.ImageBuilt || r.img.Recipe != "r1" {
			t.Errorf("%s: %+v, %v", who, r.img, r.err)
		}
	}
	if err := <-create; err != nil {
		t.Errorf("create: %v", err)
	}
	if n := f.count(); n != 1 {
		t.Fatalf("%d builds, want one shared", n)
	}
}

// TestBuildImageCancel: a client that goes away stops waiting; the build
// goes on while another waits, and is cancelled when none does.
func TestBuildImageCancel(t *testing.T) {
	f := newFakeStore()
	s := newImageServer(t, f)

	actx, acancel := context.WithCancel(context.Background())
	a := make(lineSink, 10)
	aDone := s.start(actx, false, a)
	<-f.started
	f.lines <- "one"
	a.expect(t, "A", "[default] one")
	bctx, bcancel := context.WithCancel(context.Background())
	b := make(lineSink, 10)
	bDone := s.start(bctx, false, b)
	b.expect(t, "B", "[default] one")

	acancel()
	if r := result(t, "A", aDone); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("A after its cancel: %+v, %v", r.img, r.err)
	}
	waitUntil(t, "A to leave", func() bool { return s.images.waiting("default") == 1 })
	f.lines <- "two" // the build still runs: it takes a line
	b.expect(t, "B", "[default] two")

	bcancel()
	if r := result(t, "B", bDone); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("B after its cancel: %+v, %v", r.img, r.err)
	}
	select {
	case err := <-f.ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("build ended with %v, want cancelled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the build was not cancelled when nobody waited any more")
	}
	if _, err := f.Get("default"); !errors.Is(err, image.ErrNotBuilt) {
		t.Fatalf("after a cancelled build: %v", err)
	}

	// The next request starts a build of its own.
	cDone := s.start(context.Background(), false, nil)
	<-f.started
	close(f.lines)
	if r := result(t, "C", cDone); r.err != nil || r.img.Recipe != "r2" {
		t.Fatalf("C: %+v, %v", r.img, r.err)
	}
}

// TestBuildImageDaemonStops: a build that the daemon's end cancels is an
// unavailable error, not the client's cancel.
func TestBuildImageDaemonStops(t *testing.T) {
	f := newFakeStore()
	s := newImageServer(t, f)
	done := s.start(context.Background(), false, nil)
	<-f.started
	s.stop()
	r := result(t, "the client", done)
	if !errors.Is(r.err, errdefs.ErrUnavailable) || errors.Is(r.err, context.Canceled) || !strings.Contains(r.err.Error(), "versd stopped during the build") {
		t.Fatalf("%v, want unavailable: versd stopped", r.err)
	}
}

// waitUntil waits for cond, which the daemon's goroutines make true.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestListImages(t *testing.T) {
	f := newFakeStore()
	f.built["default.bin"] = image.Info{Name: "default.bin", SizeMiB: 63}
	s := newImageServer(t, f)
	list, err := s.client.ListImages(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "default.bin" || list[0].Status != api.ImageBuilt || list[0].SizeMiB != 63 || list[1].Status != api.ImageMissing {
		t.Fatalf("%+v", list)
	}
}

// serveOnSocket serves s on a unix socket of the test's own until the test
// ends, and returns the socket's path.
func serveOnSocket(t *testing.T, s *Server) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(s.Handler())
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return sock
}

// socketHTTP is a plain HTTP client of the daemon on sock.
func socketHTTP(sock string) *http.Client {
	return &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
}
