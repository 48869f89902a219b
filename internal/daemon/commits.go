package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/vm"
)

// Commits is what the commit, tag, sleep and restore routes need of the
// domain. *vm.Manager implements it; the handlers' tests give a fake.
type Commits interface {
	Commit(ctx context.Context, ref string, opts vm.CommitOptions) (vm.CommitResult, error)
	Commits(ctx context.Context) ([]api.Commit, error)
	GetCommit(ctx context.Context, ref string) (api.Commit, error)
	History(ctx context.Context, ref string) ([]api.Commit, error)
	RemoveCommits(ctx context.Context, refs []string) ([]string, error)
	GC(ctx context.Context, req api.GCRequest) (api.GCResponse, error)
	Usage(ctx context.Context) (api.Usage, error)
	Export(ctx context.Context, ref string, w io.Writer) error
	Import(ctx context.Context, r io.Reader) (api.ImportResponse, error)
	RunCommit(ctx context.Context, ref, alias string, count int) (vm.RunCommitResult, error)
	Tags(ctx context.Context) ([]api.Tag, error)
	SetTag(ctx context.Context, name, commit string, move bool) (api.Tag, error)
	RemoveTag(ctx context.Context, name string) error
	Sleep(ctx context.Context, ref string) (api.VM, error)
	Wake(ctx context.Context, ref string) (api.VM, error)
	Restore(ctx context.Context, ref, commit string) (api.VM, error)
}

var _ Commits = (*vm.Manager)(nil)

// reservedTags are words of the commit routes that a tag cannot be:
// GET /v1/commits/usage would never reach a tag called usage.
var reservedTags = []string{"usage"}

// Every handler here passes the request's context on: a commit, a run or
// an export stops when its client goes away. The server has no read or
// write timeout that would cut them (see Run).

func (s *Server) commitVM(w http.ResponseWriter, r *http.Request) {
	var req api.CommitRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	res, err := s.commits.Commit(r.Context(), r.PathValue("ref"), vm.CommitOptions{Tag: req.Tag, Message: req.Message})
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, api.CommitResponse{
		Commit:      res.Commit,
		PauseMillis: millis(res.Pause.Microseconds()),
		TotalMillis: res.Total.Milliseconds(),
	})
}

// millis is a duration in microseconds as fractional milliseconds, as the
// API reports pauses.
func millis(us int64) float64 { return float64(us) / 1000 }

func (s *Server) listCommits(w http.ResponseWriter, r *http.Request) {
	list, err := orEmpty(s.commits.Commits(r.Context()))
	answer(s, w, r, http.StatusOK, list, err)
}

func (s *Server) getCommit(w http.ResponseWriter, r *http.Request) {
	c, err := s.commits.GetCommit(r.Context(), r.PathValue("ref"))
	answer(s, w, r, http.StatusOK, c, err)
}

func (s *Server) commitHistory(w http.ResponseWriter, r *http.Request) {
	list, err := orEmpty(s.commits.History(r.Context(), r.PathValue("ref")))
	answer(s, w, r, http.StatusOK, list, err)
}

func (s *Server) removeCommits(w http.ResponseWriter, r *http.Request) {
	var req api.RemoveCommitsRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if len(req.Commits) == 0 || slices.Contains(req.Commits, "") {
		s.writeError(w, r, fmt.Errorf("name the commits to remove (tag, id or id prefix), none empty: %w", errdefs.ErrInvalid))
		return
	}
	removed, err := orEmpty(s.commits.RemoveCommits(r.Context(), req.Commits))
	answer(s, w, r, http.StatusOK, api.RemoveCommitsResponse{Removed: removed}, err)
}

func (s *Server) gcCommits(w http.ResponseWriter, r *http.Request) {
	var req api.GCRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.KeepLast < 0 || req.OlderThanSeconds < 0 {
		s.writeError(w, r, fmt.Errorf("keep_last and older_than_s must not be negative: %w", errdefs.ErrInvalid))
		return
	}
	res, err := s.commits.GC(r.Context(), req)
	if res.Removed == nil {
		res.Removed = []string{}
	}
	answer(s, w, r, http.StatusOK, res, err)
}

func (s *Server) commitUsage(w http.ResponseWriter, r *http.Request) {
	u, err := s.commits.Usage(r.Context())
	if u.PerCommit == nil {
		u.PerCommit = []api.Commit{}
	}
	answer(s, w, r, http.StatusOK, u, err)
}

func (s *Server) runCommit(w http.ResponseWriter, r *http.Request) {
	var req api.RunCommitRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Count == 0 {
		req.Count = 1
	}
	res, err := s.commits.RunCommit(r.Context(), r.PathValue("ref"), req.Alias, req.Count)
	answer(s, w, r, http.StatusCreated, api.RunCommitResponse{
		Commit: res.Commit, VMs: res.VMs,
		RestoreMillis:    res.Restore.Milliseconds(),
		FirstReadyMillis: res.FirstReady.Milliseconds(),
		AllReadyMillis:   res.AllReady.Milliseconds(),
	}, err)
}

func (s *Server) listTags(w http.ResponseWriter, r *http.Request) {
	list, err := orEmpty(s.commits.Tags(r.Context()))
	answer(s, w, r, http.StatusOK, list, err)
}

// setTag answers 201 for a new tag and 200 for one moved.
func (s *Server) setTag(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req api.TagRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Commit == "" {
		s.writeError(w, r, fmt.Errorf("tag %q: name the commit to tag (tag, id or id prefix): %w", name, errdefs.ErrInvalid))
		return
	}
	if slices.Contains(reservedTags, name) {
		s.writeError(w, r, fmt.Errorf("tag %q: the name is reserved by the API; choose another: %w", name, errdefs.ErrInvalid))
		return
	}
	status := http.StatusCreated
	if req.Move {
		tags, err := s.commits.Tags(r.Context())
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		if slices.ContainsFunc(tags, func(t api.Tag) bool { return t.Name == name }) {
			status = http.StatusOK
		}
	}
	t, err := s.commits.SetTag(r.Context(), name, req.Commit, req.Move)
	answer(s, w, r, status, t, err)
}

func (s *Server) deleteTag(w http.ResponseWriter, r *http.Request) {
	if err := s.commits.RemoveTag(r.Context(), r.PathValue("name")); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) sleepVM(w http.ResponseWriter, r *http.Request) {
	drain(w, r)
	v, err := s.commits.Sleep(r.Context(), r.PathValue("ref"))
	answer(s, w, r, http.StatusOK, v, err)
}

func (s *Server) wakeVM(w http.ResponseWriter, r *http.Request) {
	drain(w, r)
	v, err := s.commits.Wake(r.Context(), r.PathValue("ref"))
	answer(s, w, r, http.StatusOK, v, err)
}

func (s *Server) restoreVM(w http.ResponseWriter, r *http.Request) {
	var req api.RestoreRequest
	if err := decode(r, &req); err != nil {
		s.writeError(w, r, err)
		return
	}
	if req.Commit == "" {
		s.writeError(w, r, fmt.Errorf("name the commit to restore (tag, id or id prefix): %w", errdefs.ErrInvalid))
		return
	}
	v, err := s.commits.Restore(r.Context(), r.PathValue("ref"), req.Commit)
	answer(s, w, r, http.StatusOK, v, err)
}

// answer writes v with status, or err.
func answer[T any](s *Server, w http.ResponseWriter, r *http.Request, status int, v T, err error) {
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, status, v)
}

// orEmpty makes a nil list an empty one, so that JSON clients get [] and
// not null.
func orEmpty[T any](list []T, err error) ([]T, error) {
	if list == nil {
		list = []T{}
	}
	return list, err
}
