package qemu

import (
	"bytes"
	"context"
	"encoding/binary"
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
	n, err := imageSize(path)
	if err != nil {
		return 0, err
	}
	return int((n + mib - 1) / mib), nil
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
	vsize, err := imageSize(backing)
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
	if err := writeOverlay(path, backing, backingFmt, size); err != nil {
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

// qcow2Magic begins every qcow2 image.
var qcow2Magic = []byte{'Q', 'F', 'I', 0xfb}

// Backing reads the backing file a disk image names and that file's
// format, from the image's qcow2 header; a raw image (or a qcow2 without
// backing) has none. Both formats are told apart by their magic, which is
// safe here: every image in a chain is one vers made.
func Backing(path string) (backing, format string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	var hdr [20]byte
	if n, _ := f.ReadAt(hdr[:], 0); n < len(hdr) || !bytes.Equal(hdr[:4], qcow2Magic) {
		return "", "", nil
	}
	off := binary.BigEndian.Uint64(hdr[8:16])
	size := binary.BigEndian.Uint32(hdr[16:20])
	if off == 0 || size == 0 {
		return "", "", nil
	}
	if size > 4096 {
		return "", "", fmt.Errorf("%s: backing file name of %d bytes: not an image vers made", path, size)
	}
	name := make([]byte, size)
	if _, err := f.ReadAt(name, int64(off)); err != nil {
		return "", "", fmt.Errorf("%s: read backing file name: %w", path, err)
	}
	backing = string(name)
	format, err = Format(backing)
	return backing, format, err
}

// Format is "qcow2" or "raw", by the image's magic.
func Format(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	magic := make([]byte, 4)
	if n, _ := f.ReadAt(magic, 0); n == 4 && bytes.Equal(magic, qcow2Magic) {
		return "qcow2", nil
	}
	return "raw", nil
}

// Rebase makes the qcow2 image at path name backing (of format) as its
// backing file, without looking at either's data: the caller knows backing
// holds what the old one did.
func Rebase(ctx context.Context, path, backing, format string) error {
	_, err := runImg(ctx, "rebase", "-u", "-f", "qcow2", "-F", format, "-b", backing, path)
	if err != nil {
		return fmt.Errorf("rebase %s: %w", path, err)
	}
	return nil
}
