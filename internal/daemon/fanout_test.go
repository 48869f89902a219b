package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"vers/api"
	"vers/internal/agent"
	"vers/internal/errdefs"
)

// fakeFanouts are VMs whose commands print what out says for them (or
// fail as errs says).
type fakeFanouts struct {
	vms  []api.VM
	out  map[string]string
	errs map[string]error
	reqs chan agent.ExecRequest
}

func (f *fakeFanouts) Get(ctx context.Context, ref string) (api.VM, error) {
	for _, v := range f.vms {
		if v.ID == ref || v.Alias == ref {
			return v, nil
		}
	}
	return api.VM{}, fmt.Errorf("vm %q: %w", ref, errdefs.ErrNotFound)
}

func (f *fakeFanouts) List(ctx context.Context) ([]api.VM, error) { return f.vms, nil }

func (f *fakeFanouts) Exec(ctx context.Context, ref string, req agent.ExecRequest) (Process, error) {
	f.reqs <- req
	if err := f.errs[ref]; err != nil {
		return nil, err
	}
	return &fakeProc{out: strings.NewReader(f.out[ref]), code: len(f.out[ref]) % 2}, nil
}

type fakeProc struct {
	out  io.Reader
	code int
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

func (p *fakeProc) Stdin() io.WriteCloser       { return nopWriteCloser{io.Discard} }
func (p *fakeProc) Stdout() io.Reader           { return p.out }
func (p *fakeProc) Stderr() io.Reader           { return strings.NewReader("") }
func (p *fakeProc) Wait() (agent.Result, error) { return agent.Result{ExitCode: p.code}, nil }
func (p *fakeProc) Close() error                { return nil }

func fanoutServer(t *testing.T) (*Server, *fakeFanouts) {
	t.Helper()
	at := func(m int) time.Time { return time.Date(2026, 1, 1, 0, m, 0, 0, time.UTC) }
	f := &fakeFanouts{
		vms: []api.VM{
			{ID: "r0", Alias: "root", CreatedAt: at(0)},
			{ID: "k2", Alias: "kid-b", ParentID: "r0", CreatedAt: at(2)},
			{ID: "k1", Alias: "kid-a", ParentID: "r0", CreatedAt: at(1)},
			{ID: "g1", Alias: "grand", ParentID: "k1", CreatedAt: at(3)},
			{ID: "o1", Alias: "other", CreatedAt: at(4)},
		},
		out:  map[string]string{"r0": "same\n", "k1": "same\n", "k2": "different!\n", "o1": "x"},
		errs: map[string]error{"g1": fmt.Errorf("vm grand is dead: %w", errdefs.ErrConflict)},
		reqs: make(chan agent.ExecRequest, 16),
	}
	return &Server{fanouts: f, log: slog.New(slog.NewTextHandler(io.Discard, nil))}, f
}

func postJSON(s *Server, path, body string) *httptest.ResponseRecorder {
	w := httptest.NewRecorder()
	s.Handler().ServeHTTP(w, httptest.NewRequest("POST", path, strings.NewReader(body)))
	return w
}

func TestFanoutTree(t *testing.T) {
	s, f := fanoutServer(t)
	w := postJSON(s, "/v1/fanout", `{"command":"cat /x","tree":"root","env":["A=1"],"timeout_ms":5000}`)
	if w.Code != http.StatusOK {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	var res api.FanoutResult
	if err := json.Unmarshal(w.Body.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range res.Results {
		got = append(got, fmt.Sprintf("%s:%d:%d", r.VM.Alias, r.ExitCode, r.Group))
	}
	// Depth first, oldest child first; root and kid-a printed the same.
	if want := "root:1:1 kid-a:1:1 grand:255:2 kid-b:1:3"; strings.Join(got, " ") != want {
		t.Errorf("rows %v, want %s", got, want)
	}
	if g := res.Results[2]; g.Error == nil || g.Error.Code != api.CodeConflict || !strings.Contains(g.Error.Message, "dead") {
		t.Errorf("the dead VM's row %+v", g)
	}
	if len(res.Groups) != 3 || len(res.Groups[0].VMs) != 2 || res.ExitCode != 255 || res.Command != "cat /x" {
		t.Errorf("groups %+v, exit %d", res.Groups, res.ExitCode)
	}
	for range 4 {
		req := <-f.reqs
		if req.Shell != "cat /x" || req.Timeout != 5*time.Second || len(req.Env) != 1 {
			t.Errorf("exec request %+v", req)
		}
	}
}

func TestFanoutDefaultsAndOn(t *testing.T) {
	s, f := fanoutServer(t)
	w := postJSON(s, "/v1/fanout", `{"command":"true","on":["other","o1","kid-b"]}`)
	var res api.FanoutResult
	if w.Code != http.StatusOK || json.Unmarshal(w.Body.Bytes(), &res) != nil || len(res.Results) != 2 {
		t.Fatalf("%d %s: want the two VMs, once each", w.Code, w.Body)
	}
	if req := <-f.reqs; req.Timeout != api.DefaultFanoutTimeoutMS*time.Millisecond {
		t.Errorf("timeout %v, want the default", req.Timeout)
	}
}

func TestFanoutRefusals(t *testing.T) {
	s, f := fanoutServer(t)
	tests := []struct {
		body string
		code int
		says string
	}{
		{`{"tree":"root"}`, 400, "give the command"},
		{`{"command":"x"}`, 400, "exactly one of on, children and tree"},
		{`{"command":"x","tree":"root","children":"root"}`, 400, "exactly one"},
		{`{"command":"x","on":["root",""]}`, 400, "empty VM name"},
		{`{"command":"x","tree":"root","timeout_ms":-1}`, 400, "timeout_ms -1"},
		{`{"command":"x","tree":"root","timeout_ms":3600001}`, 400, "timeout_ms"},
		{`{"command":"x","tree":"root","max_output":-5}`, 400, "max_output"},
		{`{"command":"x","tree":"root","env":["=1"]}`, 400, "KEY=VALUE"},
		{`{"command":"x","tree":"nope"}`, 404, "tree nope"},
		{`{"command":"x","children":"other"}`, 404, "has no children"},
		{`{"command":"x","tree":"root","extra":1}`, 400, "unknown field"},
	}
	for _, tt := range tests {
		w := postJSON(s, "/v1/fanout", tt.body)
		var e api.Error
		json.Unmarshal(w.Body.Bytes(), &e)
		if w.Code != tt.code || !strings.Contains(e.Message, tt.says) {
			t.Errorf("%s: %d %q, want %d saying %q", tt.body, w.Code, e.Message, tt.code, tt.says)
		}
	}
	if n := len(f.reqs); n != 0 {
		t.Errorf("%d commands ran for refused requests", n)
	}
	var big bytes.Buffer
	big.WriteString(`{"command":"x","on":[`)
	for i := range api.MaxFanoutVMs + 1 {
		if i > 0 {
			big.WriteString(",")
		}
		fmt.Fprintf(&big, `"v%d"`, i)
	}
	big.WriteString(`]}`)
	if w := postJSON(s, "/v1/fanout", big.String()); w.Code != 400 {
		t.Errorf("%d VMs: %d, want 400", api.MaxFanoutVMs+1, w.Code)
	}
}
