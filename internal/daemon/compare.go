package daemon

import (
	"context"
	"fmt"
	"net/http"
	"slices"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/project"
)

// Heads is what the heads routes need of the domain: the registry of
// which project directory's HEAD names which VM.
type Heads interface {
	Heads(ctx context.Context) ([]api.Head, error)
	SetHead(ctx context.Context, dir, ref string) (api.Head, error)
	Get(ctx context.Context, ref string) (api.VM, error)
}

func (s *Server) listHeads(w http.ResponseWriter, r *http.Request) {
	list, err := orEmpty(s.heads.Heads(r.Context()))
	answer(s, w, r, http.StatusOK, list, err)
}

func (s *Server) setHead(w http.ResponseWriter, r *http.Request) {
	var req api.SetHeadRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	h, err := s.heads.SetHead(r.Context(), req.Dir, req.VM)
	answer(s, w, r, http.StatusOK, h, err)
}

// checkoutHead is `vers checkout VM` in a project directory versd knows
// (one GET /v1/heads lists), done by versd for a client that is not in
// that directory (the web UI): it writes the directory's .vers/HEAD as the
// CLI does (project.SetHead), then records it as PUT /v1/heads does
// (SetHead: the registry and the event head.moved). Only a directory the
// registry names is written to.
func (s *Server) checkoutHead(w http.ResponseWriter, r *http.Request) {
	var req api.SetHeadRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	h, err := s.checkout(r.Context(), req)
	answer(s, w, r, http.StatusOK, h, err)
}

func (s *Server) checkout(ctx context.Context, req api.SetHeadRequest) (api.Head, error) {
	if req.Dir == "" || req.VM == "" {
		return api.Head{}, fmt.Errorf("name the project directory (dir) and the VM its HEAD moves to (vm): %w", errdefs.ErrInvalid)
	}
	heads, err := s.heads.Heads(ctx)
	if err != nil {
		return api.Head{}, err
	}
	known := slices.ContainsFunc(heads, func(h api.Head) bool { return h.Dir == req.Dir })
	if !known {
		return api.Head{}, fmt.Errorf("versd knows no HEAD of the project directory %s; `vers checkout VM` run there sets one: %w", req.Dir, errdefs.ErrNotFound)
	}
	v, err := s.heads.Get(ctx, req.VM)
	if err != nil {
		return api.Head{}, err
	}
	p, err := project.Load(req.Dir)
	if err != nil {
		return api.Head{}, fmt.Errorf("the project directory %s: %w", req.Dir, err)
	}
	if err := p.SetHead(v.ID); err != nil {
		return api.Head{}, fmt.Errorf("move HEAD of %s: %w", req.Dir, err)
	}
	return s.heads.SetHead(ctx, req.Dir, v.ID)
}

// diffVMs compares the filesystems of two running VMs.
func (s *Server) diffVMs(w http.ResponseWriter, r *http.Request) {
	var req api.FSDiffRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.A == "" || req.B == "" {
		s.writeError(w, r, fmt.Errorf("name the two VMs to compare (a and b): %w", errdefs.ErrInvalid))
		return
	}
	d, err := s.vms.Diff(r.Context(), req)
	answer(s, w, r, http.StatusOK, d, err)
}
