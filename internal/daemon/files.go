package daemon

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"vers/internal/errdefs"
)

// readFile streams a file out of a VM.
func (s *Server) readFile(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Query().Get("path")
	if path == "" {
		s.writeError(w, r, fmt.Errorf("give the file with ?path=: %w", errdefs.ErrInvalid))
		return
	}
	rc, info, err := s.vms.ReadFile(r.Context(), r.PathValue("ref"), path)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
	w.Header().Set("X-File-Mode", strconv.FormatUint(uint64(info.Mode.Perm()), 8))
	w.WriteHeader(http.StatusOK)
	io.Copy(w, rc)
}

// writeFile stores the request body as a file in a VM.
func (s *Server) writeFile(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Query().Get("path")
	if path == "" {
		s.writeError(w, r, fmt.Errorf("give the file with ?path=: %w", errdefs.ErrInvalid))
		return
	}
	mode := os.FileMode(0o644)
	if m := r.URL.Query().Get("mode"); m != "" {
		v, err := strconv.ParseUint(m, 8, 32)
		if err != nil {
			s.writeError(w, r, fmt.Errorf("mode %q is not octal: %w", m, errdefs.ErrInvalid))
			return
		}
		mode = os.FileMode(v)
	}
	if err := s.vms.WriteFile(r.Context(), r.PathValue("ref"), path, mode, r.Body); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
