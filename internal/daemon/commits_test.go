package daemon

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"vers/api"
	"vers/client"
	"vers/internal/errdefs"
	"vers/internal/vm"
)

// fakeCommits is the domain's commit side: it records each call and
// answers with what the test set.
type fakeCommits struct {
	mu    sync.Mutex
	calls []string

	err error // every call's answer, when set
	// block makes Commit say it started, then wait for its context to
	// end; ended gets the context's error.
	block          bool
	started, ended chan error
	// archive is what Export writes; exportErr ends it, after half when
	// the half is not empty.
	archive   []byte
	exportErr error
	imported  []byte
	tags      []api.Tag
}

var _ Commits = (*fakeCommits)(nil)

func (f *fakeCommits) call(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	return f.err
}

// set changes f under its lock: the handlers read it in their own
// goroutines, synchronised with the test only through a socket.
func (f *fakeCommits) set(change func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change()
}

func (f *fakeCommits) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func (f *fakeCommits) last() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.calls) == 0 {
		return ""
	}
	return f.calls[len(f.calls)-1]
}

func (f *fakeCommits) Commit(ctx context.Context, ref string, o vm.CommitOptions) (vm.CommitResult, error) {
	if err := f.call("Commit %s %q %q", ref, o.Tag, o.Message); err != nil {
		return vm.CommitResult{}, err
	}
	if f.block {
		f.started <- nil
		<-ctx.Done()
		f.ended <- ctx.Err()
		return vm.CommitResult{}, ctx.Err()
	}
	return vm.CommitResult{Commit: api.Commit{ID: "c1", Tags: []string{o.Tag}}, Pause: 13200 * time.Microsecond, Total: 3400 * time.Millisecond}, nil
}

func (f *fakeCommits) Commits(context.Context) ([]api.Commit, error) {
	return nil, f.call("Commits")
}

func (f *fakeCommits) GetCommit(_ context.Context, ref string) (api.Commit, error) {
	return api.Commit{ID: ref}, f.call("GetCommit %s", ref)
}

func (f *fakeCommits) History(_ context.Context, ref string) ([]api.Commit, error) {
	return []api.Commit{{ID: ref}, {ID: "parent"}}, f.call("History %s", ref)
}

func (f *fakeCommits) RemoveCommits(_ context.Context, refs []string) ([]string, error) {
	return refs, f.call("RemoveCommits %v", refs)
}

func (f *fakeCommits) GC(_ context.Context, req api.GCRequest) (api.GCResponse, error) {
	return api.GCResponse{FreedBytes: 10}, f.call("GC %+v", req)
}

func (f *fakeCommits) Usage(context.Context) (api.Usage, error) {
	return api.Usage{Commits: 2, StoredBytes: 5}, f.call("Usage")
}

func (f *fakeCommits) Export(ctx context.Context, ref string, w io.Writer) error {
	if err := f.call("Export %s", ref); err != nil {
		return err
	}
	f.mu.Lock()
	archive, exportErr := f.archive, f.exportErr
	f.mu.Unlock()
	if exportErr != nil {
		w.Write(archive[:len(archive)/2])
		return exportErr
	}
	_, err := w.Write(archive)
	return err
}

func (f *fakeCommits) Import(_ context.Context, r io.Reader) (api.ImportResponse, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return api.ImportResponse{}, err
	}
	f.set(func() { f.imported = b })
	return api.ImportResponse{Commit: api.Commit{ID: "imp"}, NewChunks: 3}, f.call("Import %d", len(b))
}

func (f *fakeCommits) RunCommit(_ context.Context, ref, alias string, count int) (vm.RunCommitResult, error) {
	res := vm.RunCommitResult{Commit: api.Commit{ID: ref}, Restore: 120 * time.Millisecond, FirstReady: 400 * time.Millisecond, AllReady: time.Second}
	for i := 0; i < count; i++ {
		res.VMs = append(res.VMs, api.VM{ID: fmt.Sprint(i), Alias: alias})
	}
	return res, f.call("RunCommit %s %q %d", ref, alias, count)
}

func (f *fakeCommits) Tags(context.Context) ([]api.Tag, error) {
	err := f.call("Tags")
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.tags, err
}

func (f *fakeCommits) SetTag(_ context.Context, name, commit string, move bool) (api.Tag, error) {
	return api.Tag{Name: name, Commit: commit}, f.call("SetTag %s %s %v", name, commit, move)
}

func (f *fakeCommits) RemoveTag(_ context.Context, name string) error {
	return f.call("RemoveTag %s", name)
}

func (f *fakeCommits) Sleep(_ context.Context, ref string) (api.VM, error) {
	return api.VM{ID: ref, State: api.StateSleeping}, f.call("Sleep %s", ref)
}

func (f *fakeCommits) Wake(_ context.Context, ref string) (api.VM, error) {
	return api.VM{ID: ref, State: api.StateRunning}, f.call("Wake %s", ref)
}

func (f *fakeCommits) Restore(_ context.Context, ref, commit string) (api.VM, error) {
	return api.VM{ID: ref, LastCommit: commit}, f.call("Restore %s %s", ref, commit)
}

// commitServer serves the API on f over a unix socket, and returns a
// client of it and a raw HTTP client.
func commitServer(t *testing.T, f *fakeCommits) (*client.Client, *http.Client) {
	t.Helper()
	s := &Server{commits: f, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	sock := serveOnSocket(t, s)
	raw := socketHTTP(sock)
	return client.New(sock), raw
}

// TestCommitRoutes: each route reaches its domain call with what the
// request says, and answers with its status.
func TestCommitRoutes(t *testing.T) {
	f := &fakeCommits{tags: []api.Tag{{Name: "old"}}}
	_, raw := commitServer(t, f)
	tests := []struct {
		method, path, body string
		status             int
		call               string
		answer             string // in the body
	}{
		{"POST", "/v1/vms/db-root/commit", `{"tag":"t","message":"m"}`, 201, `Commit db-root "t" "m"`, `"pause_ms":13.2,"total_ms":3400`},
		{"GET", "/v1/commits", "", 200, "Commits", `[]`},
		{"GET", "/v1/commits/usage", "", 200, "Usage", `"commits":2`},
		{"GET", "/v1/commits/usage/history", "", 200, "History usage", `"parent"`},
		{"GET", "/v1/commits/3f9a", "", 200, "GetCommit 3f9a", `"id":"3f9a"`},
		{"GET", "/v1/commits/db-ready/history", "", 200, "History db-ready", `{"id":"parent"`},
		{"POST", "/v1/commits/remove", `{"commits":["a","b"]}`, 200, "RemoveCommits [a b]", `{"removed":["a","b"]}`},
		{"POST", "/v1/commits/gc", `{"keep_last":2,"older_than_s":60,"dry_run":true}`, 200, "GC {KeepLast:2 OlderThanSeconds:60 DryRun:true}", `"removed":[]`},
		{"POST", "/v1/commits/db-ready/run", `{}`, 201, `RunCommit db-ready "" 1`, `"restore_ms":120,"first_ready_ms":400,"all_ready_ms":1000`},
		{"POST", "/v1/commits/db-ready/run", `{"alias":"t","count":3}`, 201, `RunCommit db-ready "t" 3`, `"alias":"t"`},
		{"GET", "/v1/tags", "", 200, "Tags", `[{"name":"old"`},
		{"PUT", "/v1/tags/new", `{"commit":"3f9a"}`, 201, "SetTag new 3f9a false", `"name":"new"`},
		{"PUT", "/v1/tags/new", `{"commit":"3f9a","move":true}`, 201, "SetTag new 3f9a true", `"name":"new"`},
		{"PUT", "/v1/tags/old", `{"commit":"3f9a","move":true}`, 200, "SetTag old 3f9a true", `"name":"old"`},
		{"DELETE", "/v1/tags/old", "", 204, "RemoveTag old", ""},
		{"POST", "/v1/vms/db-root/sleep", "", 200, "Sleep db-root", `"state":"sleeping"`},
		{"POST", "/v1/vms/db-root/wake", "", 200, "Wake db-root", `"state":"running"`},
		{"POST", "/v1/vms/db-root/restore", `{"commit":"db-ready"}`, 200, "Restore db-root db-ready", `"last_commit":"db-ready"`},
	}
	for _, tt := range tests {
		status, body := send(t, raw, tt.method, tt.path, tt.body)
		if status != tt.status || f.last() != tt.call || !strings.Contains(body, tt.answer) {
			t.Errorf("%s %s: %d %s, called %q; want %d with %s, %q", tt.method, tt.path, status, body, f.last(), tt.status, tt.answer, tt.call)
		}
	}
}

func send(t *testing.T, raw *http.Client, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://versd"+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := raw.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestCommitRoutesRefuse: what is wrong in a request is refused before the
// domain sees it, and the domain's errors keep their kind.
func TestCommitRoutesRefuse(t *testing.T) {
	f := &fakeCommits{}
	c, raw := commitServer(t, f)
	for _, tt := range []struct{ method, path, body string }{
		{"POST", "/v1/commits/remove", `{"commits":[]}`},
		{"POST", "/v1/commits/remove", `{"commits":["a",""]}`},
		{"POST", "/v1/commits/gc", `{"keep_last":-1}`},
		{"POST", "/v1/commits/gc", `{"keep":1}`},
		{"POST", "/v1/vms/x/restore", `{}`},
		{"PUT", "/v1/tags/t", `{}`},
		{"PUT", "/v1/tags/usage", `{"commit":"3f9a"}`},
		{"POST", "/v1/vms/x/commit", `{"tag":`},
	} {
		status, body := send(t, raw, tt.method, tt.path, tt.body)
		if status != http.StatusBadRequest || !strings.Contains(body, `"code":"invalid"`) || len(f.callList()) != 0 {
			t.Errorf("%s %s %s: %d %s, calls %q", tt.method, tt.path, tt.body, status, body, f.callList())
		}
	}
	ctx := context.Background()
	f.set(func() { f.err = fmt.Errorf("no commit or tag %q: %w", "nope", errdefs.ErrNotFound) })
	if _, err := c.GetCommit(ctx, "nope"); !errors.Is(err, errdefs.ErrNotFound) || err.Error() != `no commit or tag "nope"` {
		t.Errorf("not found: %v", err)
	}
	f.set(func() { f.err = fmt.Errorf("commit 3f9a is needed by VM sleepy: %w", errdefs.ErrConflict) })
	if _, err := c.RemoveCommits(ctx, []string{"3f9a"}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("conflict: %v", err)
	}
	f.set(func() { f.err = fmt.Errorf("the commit store is full: %w", errdefs.ErrNoSpace) })
	if _, err := c.Commit(ctx, "x", api.CommitRequest{}); !errors.Is(err, errdefs.ErrNoSpace) {
		t.Errorf("no space: %v", err)
	}
}

// TestCommitStopsWithClient: a client that goes away ends the commit's
// context in the domain.
func TestCommitStopsWithClient(t *testing.T) {
	f := &fakeCommits{block: true, started: make(chan error, 1), ended: make(chan error, 1)}
	c, _ := commitServer(t, f)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := c.Commit(ctx, "db-root", api.CommitRequest{Tag: "t"})
		done <- err
	}()
	<-f.started
	cancel()
	select {
	case err := <-f.ended:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("ended with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the commit went on after its client left")
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("client: %v", err)
	}
}

func TestExportStreams(t *testing.T) {
	f := &fakeCommits{archive: bytes.Repeat([]byte("0123456789"), 100_000)}
	c, raw := commitServer(t, f)
	var got bytes.Buffer
	if err := c.ExportCommit(context.Background(), "db-ready", &got); err != nil || !bytes.Equal(got.Bytes(), f.archive) {
		t.Fatalf("%d bytes, %v", got.Len(), err)
	}
	resp, err := raw.Get("http://versd/v1/commits/db-ready/export")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "application/x-tar" {
		t.Fatalf("%d %s", resp.StatusCode, ct)
	}
}

// TestExportFailures: before its first byte an export's failure is an
// error answer; after it the stream is cut, and the client says so.
func TestExportFailures(t *testing.T) {
	f := &fakeCommits{err: fmt.Errorf("no commit or tag %q: %w", "nope", errdefs.ErrNotFound)}
	c, _ := commitServer(t, f)
	var got bytes.Buffer
	if err := c.ExportCommit(context.Background(), "nope", &got); !errors.Is(err, errdefs.ErrNotFound) || got.Len() != 0 {
		t.Fatalf("not found: %v, %d bytes", err, got.Len())
	}

	// Fails before writing anything.
	f.set(func() { f.err, f.exportErr = nil, errors.New("chunk 42 is corrupt") })
	if err := c.ExportCommit(context.Background(), "db-ready", &got); err == nil || !strings.Contains(err.Error(), "chunk 42 is corrupt") {
		t.Fatalf("failed at once: %v", err)
	}

	// Fails half way, small and large: the client never takes it for whole.
	for _, size := range []int{100, 1 << 20} {
		f.set(func() { f.archive = bytes.Repeat([]byte("x"), size) })
		got.Reset()
		err := c.ExportCommit(context.Background(), "db-ready", &got)
		if err == nil || got.Len() >= size {
			t.Fatalf("%d bytes: cut short after %d without an error (%v)", size, got.Len(), err)
		}
		if got.Len() > 0 && !strings.Contains(err.Error(), "the archive arrived incomplete") {
			t.Errorf("%d bytes: %v", size, err)
		}
	}
}

func TestImportBody(t *testing.T) {
	f := &fakeCommits{}
	c, _ := commitServer(t, f)
	archive := bytes.Repeat([]byte("tar"), 500_000)
	res, err := c.ImportCommit(context.Background(), bytes.NewReader(archive))
	var imported []byte
	f.set(func() { imported = f.imported })
	if err != nil || res.Commit.ID != "imp" || res.NewChunks != 3 || !bytes.Equal(imported, archive) {
		t.Fatalf("%+v %v, %d bytes imported", res, err, len(imported))
	}
	f.set(func() { f.err = fmt.Errorf("not an archive of vers: %w", errdefs.ErrInvalid) })
	if _, err := c.ImportCommit(context.Background(), strings.NewReader("junk")); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("invalid: %v", err)
	}
	if !slices.Contains(f.callList(), "Import 4") {
		t.Fatalf("calls %q", f.callList())
	}
}
