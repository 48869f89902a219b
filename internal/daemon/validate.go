package daemon

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

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
	if req.Command == "" && len(req.Argv) == 0 && !req.TTY {
		return fmt.Errorf("nothing to run: give a command: %w", errdefs.ErrInvalid)
	}
	if req.TimeoutMS < 0 {
		return fmt.Errorf("timeout must not be negative: %w", errdefs.ErrInvalid)
	}
	for _, kv := range req.Env {
		if i := strings.IndexByte(kv, '='); i <= 0 {
			return fmt.Errorf("environment entry %q: write it KEY=VALUE (e.g. -e %s=1): %w", kv, envKey(kv), errdefs.ErrInvalid)
		}
	}
	return nil
}

func envKey(kv string) string {
	if k, _, _ := strings.Cut(kv, "="); k != "" {
		return k
	}
	return "NAME"
}
