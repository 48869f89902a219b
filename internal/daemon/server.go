// Package daemon is versd's HTTP/JSON and WebSocket front: it decodes
// requests, validates them, calls the vm domain and encodes answers. Errors
// become HTTP statuses in exactly one place (writeError). It holds no VM
// state of its own.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync/atomic"

	"vers/api"
	"vers/internal/buildid"
	"vers/internal/errdefs"
	"vers/internal/vm"
)

// Version is reported by GET /v1/health.
var Version = "0.1.0"

// Server serves the vers API.
type Server struct {
	vms *vm.Manager
	// commits is vms, seen through the interface the commit routes need.
	commits Commits
	// trees is vms, seen by the directory routes (tree.go).
	trees Trees
	// tunnels is vms too, for GET /v1/vms/{ref}/tunnel (tunnel.go).
	tunnels Tunnels
	// fanouts is vms, for POST /v1/fanout (fanout.go).
	fanouts Fanouts
	// consoles and heads are vms too (console.go, compare.go).
	consoles Consoles
	heads    Heads
	images   *Images
	log      *slog.Logger
	// eventSrc feeds GET /v1/events (events.go).
	eventSrc EventSource

	// busy counts requests in flight (health excluded), so that a client
	// restarts a daemon of another build only when nothing would be cut.
	busy atomic.Int64
	// agent is the agent binary this daemon checked at start, and its build
	// id then; health reports a daemon whose agent has changed as stale.
	agent, agentID string
	// listen is the TCP address served too, or "" (health reports it).
	listen string
	// ui is the web UI's listener and sessions (ui.go), nil when none is served.
	ui *uiFront
}

func New(vms *vm.Manager, images *Images, log *slog.Logger) *Server {
	return &Server{vms: vms, commits: vms, trees: vms, tunnels: vmTunnels{vms}, fanouts: vmFanouts{vms}, consoles: vms, heads: vms, images: images, log: log}
}

// routes is every operation the API serves; api/openapi.yaml describes the same set.
func (s *Server) routes() map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"GET /v1/health":            s.health,
		"GET /v1/vms":               s.listVMs,
		"POST /v1/vms":              s.createVM,
		"GET /v1/vms/{ref}":         s.getVM,
		"GET /v1/vms/{ref}/info":    s.vmInfo,
		"DELETE /v1/vms/{ref}":      s.deleteVM,
		"POST /v1/vms/{ref}/branch": s.branchVM,
		"POST /v1/vms/{ref}/pause":  s.pauseVM,
		"POST /v1/vms/{ref}/resume": s.resumeVM,
		"GET /v1/vms/{ref}/exec":    s.exec,
		"GET /v1/vms/{ref}/files":   s.readFile,
		"PUT /v1/vms/{ref}/files":   s.writeFile,
		"GET /v1/vms/{ref}/tree":    s.readTree,
		"PUT /v1/vms/{ref}/tree":    s.writeTree,
		"GET /v1/vms/{ref}/tunnel":  s.tunnel,
		"GET /v1/vms/{ref}/console": s.console,
		"GET /v1/images":            s.listImages,

		"POST /v1/images/{name}/build": s.buildImage,

		"POST /v1/vms/{ref}/commit":  s.commitVM,
		"POST /v1/vms/{ref}/sleep":   s.sleepVM,
		"POST /v1/vms/{ref}/wake":    s.wakeVM,
		"POST /v1/vms/{ref}/restore": s.restoreVM,

		"GET /v1/commits":               s.listCommits,
		"GET /v1/commits/usage":         s.commitUsage, // a literal: preferred to {ref}
		"POST /v1/commits/gc":           s.gcCommits,
		"POST /v1/commits/remove":       s.removeCommits,
		"POST /v1/commits/import":       s.importCommit,
		"GET /v1/commits/{ref}":         s.getCommit,
		"GET /v1/commits/{ref}/history": s.commitHistory,
		"GET /v1/commits/{ref}/export":  s.exportCommit,
		"POST /v1/commits/{ref}/run":    s.runCommit,

		"GET /v1/tags":           s.listTags,
		"PUT /v1/tags/{name}":    s.setTag,
		"DELETE /v1/tags/{name}": s.deleteTag,

		"GET /v1/events": s.events,

		"GET /v1/heads":   s.listHeads,
		"POST /v1/diff":   s.diffVMs,
		"POST /v1/fanout": s.runFanout,
		"PUT /v1/heads":   s.setHead,

		"POST /v1/heads/checkout": s.checkoutHead,

		"POST /v1/ui/login": s.uiLogin,
	}
}

// Handler returns the API's routes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	for pattern, h := range s.routes() {
		mux.HandleFunc(pattern, h)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A watcher of the events stays for as long as it likes; it must
		// not keep a daemon of another build from being replaced.
		if r.URL.Path != "/v1/health" && r.URL.Path != "/v1/events" {
			s.busy.Add(1)
			defer s.busy.Add(-1)
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	vms, err := s.vms.List(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	build, _ := buildid.Self()
	writeJSON(w, http.StatusOK, api.Health{
		Version: Version, PID: os.Getpid(), Accel: s.vms.Accel(), VMs: len(vms),
		Build: build, Busy: int(s.busy.Load()), Stale: s.stale(), Listen: s.listen,
	})
}

// stale says why this daemon should make way for a new one: the files it
// was started from are gone or have been rebuilt since.
func (s *Server) stale() string {
	if buildid.SelfDeleted() {
		return "runs an executable that has been deleted or replaced since it started"
	}
	if s.agent == "" {
		return ""
	}
	id, err := buildid.Of(s.agent)
	switch {
	case err != nil:
		return fmt.Sprintf("uses the agent %s, which is gone", s.agent)
	case id != s.agentID:
		return fmt.Sprintf("uses the agent %s, which has been rebuilt since it started", s.agent)
	}
	return ""
}

func (s *Server) listVMs(w http.ResponseWriter, r *http.Request) {
	vms, err := s.vms.List(r.Context())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, vms)
}

func (s *Server) createVM(w http.ResponseWriter, r *http.Request) {
	var req api.CreateVMRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.DryRun {
		if err := s.vms.Check(r.Context(), specOf(req)); err != nil {
			s.writeError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	v, err := s.vms.Create(r.Context(), specOf(req))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, v)
}

func specOf(req api.CreateVMRequest) vm.Spec {
	return vm.Spec{
		Alias: req.Alias, MemMiB: req.MemMiB, VCPUs: req.VCPUs, FsMiB: req.FsMiB,
		Kernel: req.Kernel, Rootfs: req.Rootfs, Network: req.Network,
	}
}

func (s *Server) branchVM(w http.ResponseWriter, r *http.Request) {
	var req api.BranchRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Count == 0 {
		req.Count = 1
	}
	res, err := s.vms.Branch(r.Context(), r.PathValue("ref"), req.Alias, req.Count)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, api.BranchResponse{
		Parent: res.Parent, Children: res.Children, SnapshotID: res.SnapshotID,
		PauseMillis:      float64(res.Pause.Microseconds()) / 1000,
		FirstReadyMillis: res.FirstReady.Milliseconds(),
		AllReadyMillis:   res.AllReady.Milliseconds(),
	})
}

func (s *Server) pauseVM(w http.ResponseWriter, r *http.Request) {
	v, err := s.vms.Pause(r.Context(), r.PathValue("ref"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) resumeVM(w http.ResponseWriter, r *http.Request) {
	v, err := s.vms.Resume(r.Context(), r.PathValue("ref"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) getVM(w http.ResponseWriter, r *http.Request) {
	v, err := s.vms.Get(r.Context(), r.PathValue("ref"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) vmInfo(w http.ResponseWriter, r *http.Request) {
	info, err := s.vms.Info(r.Context(), r.PathValue("ref"))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (s *Server) deleteVM(w http.ResponseWriter, r *http.Request) {
	recursive, err := queryBool(r, "recursive")
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	ids, err := s.vms.Kill(r.Context(), r.PathValue("ref"), recursive)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.DeleteVMResponse{Deleted: ids})
}

// decode reads the request body as one JSON value, to its end: the server
// notices a client that hangs up (and ends the request's context) only once
// the body is read.
func decode(r *http.Request, v any) error {
	body := http.MaxBytesReader(nil, r.Body, 1<<20)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %v: %w", err, errdefs.ErrInvalid)
	}
	io.Copy(io.Discard, body)
	return nil
}

// drain reads a body a route does not use, for the same reason.
func drain(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 1<<20))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// httpStatus is the one place an error kind becomes an HTTP status.
func httpStatus(code string) int {
	switch code {
	case api.CodeInvalid:
		return http.StatusBadRequest
	case api.CodeNotFound:
		return http.StatusNotFound
	case api.CodeConflict:
		return http.StatusConflict
	case api.CodeTimeout:
		return http.StatusGatewayTimeout
	case api.CodeUnavailable:
		return http.StatusServiceUnavailable
	case api.CodeNoSpace:
		return http.StatusInsufficientStorage
	case api.CodeUnauthorized:
		return http.StatusUnauthorized
	}
	return http.StatusInternalServerError
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	code := errdefs.Code(err)
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		return // the client went away; nobody to answer
	}
	if code == api.CodeInternal {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	e := api.Error{Code: code, Message: errdefs.Message(err)}
	// A kill that failed part way says what it removed.
	var ke *vm.KillError
	if errors.As(err, &ke) {
		e.Deleted = ke.Deleted
	}
	writeJSON(w, httpStatus(code), e)
}
