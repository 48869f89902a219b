package daemon

import (
	"fmt"
	"net/http"

	"vers/api"
	"vers/internal/errdefs"
)

func (s *Server) listHeads(w http.ResponseWriter, r *http.Request) {
	list, err := orEmpty(s.vms.Heads(r.Context()))
	answer(s, w, r, http.StatusOK, list, err)
}

func (s *Server) setHead(w http.ResponseWriter, r *http.Request) {
	var req api.SetHeadRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	h, err := s.vms.SetHead(r.Context(), req.Dir, req.VM)
	answer(s, w, r, http.StatusOK, h, err)
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
