package daemon

import (
	"net/http"

	"vers/api"
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
