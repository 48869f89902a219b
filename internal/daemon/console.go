package daemon

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	"vers/internal/errdefs"
	"vers/internal/vm"
)

// Consoles is what GET /v1/vms/{ref}/console needs of the domain.
type Consoles interface {
	Console(ctx context.Context, ref string, n int64) ([]byte, error)
}

// defaultConsoleBytes is how much of a console log is sent when the
// request does not say.
const defaultConsoleBytes = 64 << 10

// console sends the end of a VM's console log as text: at most ?bytes=N
// (default 64 KiB, at most vm.ConsoleMax).
func (s *Server) console(w http.ResponseWriter, r *http.Request) {
	n := int64(defaultConsoleBytes)
	if q := r.URL.Query().Get("bytes"); q != "" {
		v, err := strconv.ParseInt(q, 10, 64)
		if err != nil || v <= 0 || v > vm.ConsoleMax {
			s.writeError(w, r, fmt.Errorf("bytes=%q: give a number of bytes from 1 to %d: %w", q, vm.ConsoleMax, errdefs.ErrInvalid))
			return
		}
		n = v
	}
	b, err := s.consoles.Console(r.Context(), r.PathValue("ref"), n)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.Write(b)
}
