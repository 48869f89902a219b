package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"vers/api"
	"vers/internal/agent"
	"vers/internal/errdefs"
	"vers/internal/vm"
)

// Trees is what the directory routes need of the domain. *vm.Manager
// implements it; the handlers' tests give a fake.
type Trees interface {
	ReadTree(ctx context.Context, ref, path string) (io.ReadCloser, error)
	WriteTree(ctx context.Context, ref, path, name string, r io.Reader) (agent.TreeResult, error)
}

var _ Trees = (*vm.Manager)(nil)

// readTree streams a directory of a VM as a tar archive (vers cp -r). As
// readFile: chunked, and aborted rather than ended when the transfer is cut
// or the guest's walk fails, so that a client never takes a cut archive
// for a whole one (a tar archive cut between entries looks whole).
func (s *Server) readTree(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Query().Get("path")
	if path == "" {
		s.writeError(w, r, fmt.Errorf("give the path of a directory in the VM (VM:/path): %w", errdefs.ErrInvalid))
		return
	}
	rc, err := s.trees.ReadTree(r.Context(), r.PathValue("ref"), path)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/x-tar")
	w.WriteHeader(http.StatusOK)
	// The status now: a walk that fails before the first buffer is full
	// then reaches the client as a cut body, which says so, rather than as
	// a request that got no answer.
	http.NewResponseController(w).Flush()
	if _, err := io.Copy(w, rc); err != nil {
		if r.Context().Err() == nil {
			s.log.Warn("directory transfer cut short", "vm", r.PathValue("ref"), "path", path, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
}

// writeTree extracts the request body, a tar archive, into a VM: into
// path/name when path is a directory there, as path otherwise. A guest that
// fails (a full filesystem, an unsafe entry) answers at once, and the rest
// of the body is not read.
func (s *Server) writeTree(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	path := q.Get("path")
	if path == "" {
		s.writeError(w, r, fmt.Errorf("give the path of the directory in the VM (VM:/path): %w", errdefs.ErrInvalid))
		return
	}
	res, err := s.trees.WriteTree(r.Context(), r.PathValue("ref"), path, q.Get("name"), r.Body)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, api.TreeResult{
		Path: res.Path, Files: res.Files, Dirs: res.Dirs, Symlinks: res.Symlinks, Bytes: res.Bytes,
		Skipped: res.Skipped, SkippedNames: res.SkippedNames,
	})
}
