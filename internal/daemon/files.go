package daemon

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	"vers/internal/errdefs"
)

// readFile streams a file out of a VM. The body is chunked and goes to the
// file's end: the size the guest saw when it opened the file (zero for
// /proc files, less than a growing log will have) is no Content-Length.
// A transfer cut short aborts the response, so that the client sees a
// truncated body rather than a complete short file. Everything is bound to
// the request: a client that goes away ends the transfer in the guest.
func (s *Server) readFile(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Query().Get("path")
	if path == "" {
		s.writeError(w, r, fmt.Errorf("give the path of a file in the VM (VM:/path): %w", errdefs.ErrInvalid))
		return
	}
	rc, info, err := s.vms.ReadFile(r.Context(), r.PathValue("ref"), path)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-File-Mode", strconv.FormatUint(uint64(info.Mode.Perm()), 8))
	w.WriteHeader(http.StatusOK)
	if _, err := io.Copy(w, rc); err != nil {
		if r.Context().Err() == nil {
			s.log.Warn("file transfer cut short", "vm", r.PathValue("ref"), "path", path, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
}

// writeFile stores the request body as a file in a VM. When the guest fails
// before the body ends (its filesystem is full), the answer comes at once
// and the rest of the body is not read.
func (s *Server) writeFile(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Query().Get("path")
	if path == "" {
		s.writeError(w, r, fmt.Errorf("give the path of the file in the VM (VM:/path): %w", errdefs.ErrInvalid))
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
