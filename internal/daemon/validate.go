package daemon

import (
	"fmt"
	"net/http"
	"strconv"

	"vers/api"
	"vers/internal/errdefs"
)

// queryBool reads a boolean query parameter: absent is false, and anything
// strconv.ParseBool does not read is refused rather than taken as false.
func queryBool(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%s=%q: use true or false: %w", name, v, errdefs.ErrInvalid)
	}
	return b, nil
}

// validateExec checks an exec request before anything reaches the VM.
func validateExec(req api.ExecRequest) error {
	if err := req.Check(); err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalid)
	}
	return nil
}
