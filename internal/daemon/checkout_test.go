package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/project"
	"vers/internal/vm"
)

// fakeHeads is the heads registry, and VMs a and b.
type fakeHeads struct {
	heads []api.Head
	set   []string
}

func (f *fakeHeads) Heads(ctx context.Context) ([]api.Head, error) { return f.heads, nil }

func (f *fakeHeads) SetHead(ctx context.Context, dir, ref string) (api.Head, error) {
	f.set = append(f.set, dir+"="+ref)
	for i := range f.heads {
		if f.heads[i].Dir == dir {
			f.heads[i].VMID = ref
		}
	}
	return api.Head{Dir: dir, VMID: ref}, nil
}

func (f *fakeHeads) Get(ctx context.Context, ref string) (api.VM, error) {
	switch ref {
	case "a", "a-id":
		return api.VM{ID: "a-id", Alias: "a"}, nil
	case "b", "b-id":
		return api.VM{ID: "b-id", Alias: "b"}, nil
	}
	return api.VM{}, fmt.Errorf("vm %q: %w", ref, errdefs.ErrNotFound)
}

// TestCheckoutHead: versd moves the HEAD of a project directory it knows,
// in the file and in the registry; it writes nowhere else.
func TestCheckoutHead(t *testing.T) {
	dir := t.TempDir()
	if _, err := project.Init(dir); err != nil {
		t.Fatal(err)
	}
	p, _ := project.Load(dir)
	p.SetHead("a-id")
	stranger := t.TempDir()
	project.Init(stranger)
	gone := filepath.Join(t.TempDir(), "gone")
	f := &fakeHeads{heads: []api.Head{{Dir: dir, VMID: "a-id"}, {Dir: gone, VMID: "a-id"}}}
	s := &Server{heads: f, log: slog.New(slog.NewTextHandler(io.Discard, nil))}

	w := postJSON(s, "/v1/heads/checkout", fmt.Sprintf(`{"dir":%q,"vm":"b"}`, dir))
	var h api.Head
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &h) != nil || h.VMID != "b-id" || h.Dir != dir {
		t.Fatalf("checkout: %d %s", w.Code, w.Body)
	}
	if head, _ := p.Head(); head != "b-id" {
		t.Errorf("%s/.vers/HEAD names %q, want b-id", dir, head)
	}
	if strings.Join(f.set, " ") != dir+"=b-id" {
		t.Errorf("recorded %v", f.set)
	}

	tests := []struct {
		body string
		code int
		says string
	}{
		{fmt.Sprintf(`{"dir":%q}`, dir), 400, "name the project directory (dir) and the VM"},
		{`{"vm":"a"}`, 400, "name the project directory"},
		{fmt.Sprintf(`{"dir":%q,"vm":"a"}`, stranger), 404, "knows no HEAD of the project directory"},
		{fmt.Sprintf(`{"dir":%q,"vm":"nope"}`, dir), 404, `vm "nope"`},
		{fmt.Sprintf(`{"dir":%q,"vm":"a"}`, gone), 400, "the project directory " + gone},
		{`{"dir":"x","vm":"a","force":true}`, 400, "unknown field"},
	}
	for _, tt := range tests {
		w := postJSON(s, "/v1/heads/checkout", tt.body)
		var e api.Error
		json.Unmarshal(w.Body.Bytes(), &e)
		if w.Code != tt.code || !strings.Contains(e.Message, tt.says) {
			t.Errorf("%s: %d %q, want %d saying %q", tt.body, w.Code, e.Message, tt.code, tt.says)
		}
	}
	if len(f.set) != 1 {
		t.Errorf("refused checkouts were recorded: %v", f.set)
	}
	if head, _ := p.Head(); head != "b-id" {
		t.Errorf("a refused checkout moved HEAD to %q", head)
	}
	if _, err := os.Stat(filepath.Join(stranger, project.StateDir, "HEAD")); !os.IsNotExist(err) {
		t.Errorf("a directory versd does not know got a HEAD: %v", err)
	}
	if _, err := os.Stat(gone); !os.IsNotExist(err) {
		t.Errorf("a directory that was gone was made: %v", err)
	}
}

type fakeConsoles map[string]string

func (f fakeConsoles) Console(ctx context.Context, ref string, n int64) ([]byte, error) {
	log, ok := f[ref]
	if !ok {
		return nil, fmt.Errorf("vm %q: %w", ref, errdefs.ErrNotFound)
	}
	return []byte(log[max(int64(len(log))-n, 0):]), nil
}

func TestConsole(t *testing.T) {
	s := &Server{consoles: fakeConsoles{"a": "Linux version 6.1\nready\n"}, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		s.Handler().ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w
	}
	if w := get("/v1/vms/a/console"); w.Code != 200 || w.Body.String() != "Linux version 6.1\nready\n" || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/plain") {
		t.Errorf("the whole log: %d %q %s", w.Code, w.Body, w.Header().Get("Content-Type"))
	}
	if w := get("/v1/vms/a/console?bytes=6"); w.Code != 200 || w.Body.String() != "ready\n" {
		t.Errorf("its end: %d %q", w.Code, w.Body)
	}
	for _, q := range []string{"0", "-1", "x", fmt.Sprint(vm.ConsoleMax + 1)} {
		if w := get("/v1/vms/a/console?bytes=" + q); w.Code != 400 || !strings.Contains(w.Body.String(), "give a number of bytes") {
			t.Errorf("bytes=%s: %d %s", q, w.Code, w.Body)
		}
	}
	if w := get("/v1/vms/nope/console"); w.Code != 404 {
		t.Errorf("no such VM: %d", w.Code)
	}
}
