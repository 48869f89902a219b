package daemon

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/image"
	"vers/internal/vm"
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

// validateCreate checks what can be checked of a create request without
// building or booting anything: the alias and its uniqueness, the sizes
// against the host, and that the images are known. Create checks all of it
// again, with the built images.
func (s *Server) validateCreate(ctx context.Context, req api.CreateVMRequest) error {
	if err := vm.ValidateAlias(req.Alias); err != nil {
		return err
	}
	if err := vm.ReadHostLimits(s.vmsDir).Check(req.MemMiB, req.VCPUs, req.FsMiB); err != nil {
		return err
	}
	known := map[string]bool{}
	for _, n := range s.images.Names() {
		known[n] = true
	}
	for _, name := range []string{req.Kernel, req.Rootfs} {
		if !known[name] {
			return fmt.Errorf("unknown image %q (known: %s): %w", name, strings.Join(s.images.Names(), ", "), errdefs.ErrInvalid)
		}
	}
	// A built image is measured as Create would; a missing one is built first.
	if info, err := s.images.Get(req.Kernel); err == nil && info.Kind != image.KindKernel {
		return fmt.Errorf("image %q is a %s, not a kernel: %w", req.Kernel, info.Kind, errdefs.ErrInvalid)
	}
	if info, err := s.images.Get(req.Rootfs); err == nil {
		if info.Kind != image.KindRootfs {
			return fmt.Errorf("image %q is a %s, not a root filesystem: %w", req.Rootfs, info.Kind, errdefs.ErrInvalid)
		}
		if req.FsMiB < info.SizeMiB {
			return fmt.Errorf("fs_size_vm_mib %d is smaller than the %q image (%d MiB); use at least %d: %w",
				req.FsMiB, req.Rootfs, info.SizeMiB, info.SizeMiB, errdefs.ErrInvalid)
		}
	}
	if req.Alias != "" {
		if _, err := s.vms.Get(ctx, req.Alias); err == nil {
			return fmt.Errorf("alias %q is already used; pick another: %w", req.Alias, errdefs.ErrConflict)
		} else if !errors.Is(err, errdefs.ErrNotFound) {
			return err
		}
	}
	return nil
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
