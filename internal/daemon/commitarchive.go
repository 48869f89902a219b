package daemon

import (
	"net/http"
)

// exportCommit streams commit ref as one tar archive. Until its first byte
// a failure is an ordinary error answer; after it, the response is aborted
// (it never gets its last chunk), so that the client sees a truncated
// stream and never takes a short archive for a whole one.
func (s *Server) exportCommit(w http.ResponseWriter, r *http.Request) {
	drain(w, r)
	ref := r.PathValue("ref")
	out := &archiveWriter{w: w}
	err := s.commits.Export(r.Context(), ref, out)
	switch {
	case err == nil:
		out.start() // an empty archive is still an answer
	case !out.started:
		s.writeError(w, r, err)
	default:
		if r.Context().Err() == nil {
			s.log.Warn("commit export cut short", "commit", ref, "err", err)
		}
		panic(http.ErrAbortHandler)
	}
}

// archiveWriter sends the response's header with the first byte of the
// archive, so that an export failing before it still gets an error status.
type archiveWriter struct {
	w       http.ResponseWriter
	started bool
}

func (a *archiveWriter) start() {
	if a.started {
		return
	}
	a.started = true
	a.w.Header().Set("Content-Type", "application/x-tar")
	a.w.WriteHeader(http.StatusOK)
}

func (a *archiveWriter) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	a.start()
	return a.w.Write(p)
}

// importCommit reads an archive made by an export from the request body.
// The domain reads it to its end or fails; when it fails early the answer
// goes at once, without reading the rest.
func (s *Server) importCommit(w http.ResponseWriter, r *http.Request) {
	res, err := s.commits.Import(r.Context(), r.Body)
	answer(s, w, r, http.StatusCreated, res, err)
}
