package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

const mib = 1 << 20

// VirtualSizeMiB is the virtual size of a disk image, in MiB rounded up.
func VirtualSizeMiB(ctx context.Context, path string) (int, error) {
	n, err := virtualSize(ctx, path)
	if err != nil {
		return 0, err
	}
	return int((n + mib - 1) / mib), nil
}

// virtualSize reads an image's virtual size in bytes. -U (force share) lets
// it read the header of an image a running QEMU holds locked.
func virtualSize(ctx context.Context, path string) (int64, error) {
	out, err := runImg(ctx, "info", "-U", "--output=json", path)
	if err != nil {
		return 0, err
	}
	var info struct {
		VirtualSize *int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.VirtualSize == nil {
		return 0, fmt.Errorf("qemu-img info %s: unexpected output %q", path, out)
	}
	return *info.VirtualSize, nil
}

// CreateOverlay creates a qcow2 image at path whose backing file is backing
// (of format backingFmt), sizeMiB large; 0 means the backing's size. The
// backing is recorded as given: pass an absolute path. path must not exist.
// Growing is allowed, shrinking below the backing's size is ErrInvalid.
func CreateOverlay(ctx context.Context, backing, backingFmt, path string, sizeMiB int) error {
	if backing == "" || path == "" || backingFmt == "" || sizeMiB < 0 {
		return fmt.Errorf("create overlay: %w: need backing, its format, a path and a size >= 0", ErrInvalid)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("create overlay %s: %w", path, fs.ErrExist)
	}
	vsize, err := virtualSize(ctx, backing)
	if err != nil {
		return fmt.Errorf("create overlay %s: %w", path, err)
	}
	size := vsize
	if sizeMiB > 0 {
		size = int64(sizeMiB) * mib
		if size < vsize {
			return fmt.Errorf("create overlay %s: %w: size %d MiB is smaller than %s (%d MiB)",
				path, ErrInvalid, sizeMiB, backing, (vsize+mib-1)/mib)
		}
	}
	// -u: the size is known, so qemu-img need not open the backing chain
	// (which a running QEMU may hold locked, and which grows with branches).
	_, err = runImg(ctx, "create", "-q", "-f", "qcow2", "-F", backingFmt, "-b", backing, "-u",
		path, strconv.FormatInt(size, 10))
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("create overlay %s: %w", path, err)
	}
	return nil
}

func runImg(ctx context.Context, args ...string) ([]byte, error) {
	bin, err := ImgBinary()
	if err != nil {
		return nil, err
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && ctx.Err() == nil {
			return nil, fmt.Errorf("qemu-img %s: %s", args[0], strings.TrimSpace(stderr.String()))
		}
		return nil, fmt.Errorf("qemu-img %s: %w", args[0], err)
	}
	return out, nil
}

// CreateBlank creates an empty qcow2 disk of sizeMiB at path.
func CreateBlank(ctx context.Context, path string, sizeMiB int) error {
	if sizeMiB <= 0 {
		return fmt.Errorf("%w: disk size %d MiB", ErrInvalid, sizeMiB)
	}
	_, err := runImg(ctx, "create", "-q", "-f", "qcow2", path, strconv.Itoa(sizeMiB)+"M")
	return err
}
