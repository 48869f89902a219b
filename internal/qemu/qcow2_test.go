package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// imgInfo is what the overlay tests compare of `qemu-img info`.
type imgInfo struct {
	VirtualSize    int64  `json:"virtual-size"`
	ClusterSize    int64  `json:"cluster-size"`
	Format         string `json:"format"`
	Backing        string `json:"backing-filename"`
	BackingFormat  string `json:"backing-filename-format"`
	FormatSpecific struct {
		Data struct {
			Compat        string `json:"compat"`
			RefcountBits  int    `json:"refcount-bits"`
			Corrupt       bool   `json:"corrupt"`
			LazyRefcounts bool   `json:"lazy-refcounts"`
		} `json:"data"`
	} `json:"format-specific"`
}

func readImgInfo(t *testing.T, path string) imgInfo {
	t.Helper()
	out, err := runImg(context.Background(), "info", "-U", "--output=json", path)
	if err != nil {
		t.Fatal(err)
	}
	var info imgInfo
	if err := json.Unmarshal(out, &info); err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	return info
}

func qemuIO(t *testing.T, path, fmt, cmd string) string {
	t.Helper()
	out, err := exec.Command("qemu-io", "-f", fmt, "-c", cmd, path).CombinedOutput()
	if err != nil || strings.Contains(string(out), "fail") || strings.Contains(string(out), "Pattern verification failed") {
		t.Fatalf("qemu-io %s %q: %v\n%s", path, cmd, err, out)
	}
	return string(out)
}

// TestWriteOverlay: the overlays vers writes are images qemu-img finds
// sound and describes as it describes its own; they read through to their
// backing and take writes.
func TestWriteOverlay(t *testing.T) {
	needQEMU(t)
	if _, err := exec.LookPath("qemu-io"); err != nil {
		t.Skip("no qemu-io")
	}
	ctx := context.Background()
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	makeDisk(t, base, 64)
	qemuIO(t, base, "qcow2", "write -P 0x11 0 64k")
	raw := filepath.Join(dir, "base.raw")
	os.WriteFile(raw, nil, 0o600)
	os.Truncate(raw, 16*mib)

	for _, tc := range []struct {
		name, backing, format string
		size                  int64
	}{
		{"on qcow2", base, "qcow2", 64 * mib},
		{"grown", base, "qcow2", 2048 * mib},
		{"on raw", raw, "raw", 16 * mib},
		// More than 4 TiB: an L1 table of more than one cluster.
		{"huge", base, "qcow2", 5 << 40},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ours, theirs := filepath.Join(dir, tc.name+".ours"), filepath.Join(dir, tc.name+".theirs")
			if err := writeOverlay(ours, tc.backing, tc.format, tc.size); err != nil {
				t.Fatal(err)
			}
			if _, err := runImg(ctx, "create", "-q", "-f", "qcow2", "-F", tc.format, "-b", tc.backing, "-u", theirs, strconv.FormatInt(tc.size, 10)); err != nil {
				t.Fatal(err)
			}
			if out, err := runImg(ctx, "check", ours); err != nil {
				t.Fatalf("qemu-img check: %v\n%s", err, out)
			}
			got, want := readImgInfo(t, ours), readImgInfo(t, theirs)
			if got != want {
				t.Fatalf("qemu-img info of ours:\n%+v\nof qemu-img's:\n%+v", got, want)
			}
			if n, err := imageSize(ours); err != nil || n != tc.size {
				t.Fatalf("imageSize = %d, %v; want %d", n, err, tc.size)
			}
			if tc.format == "qcow2" {
				qemuIO(t, ours, "qcow2", "read -P 0x11 0 64k") // from the backing
			}
			qemuIO(t, ours, "qcow2", "write -P 0x5a 1M 128k")
			qemuIO(t, ours, "qcow2", "read -P 0x5a 1M 128k")
			if out, err := runImg(ctx, "check", ours); err != nil {
				t.Fatalf("qemu-img check after a write: %v\n%s", err, out)
			}
		})
	}

	if err := writeOverlay(filepath.Join(dir, "on raw.ours"), base, "qcow2", mib); !errors.Is(err, os.ErrExist) {
		t.Errorf("over an existing file: %v, want ErrExist", err)
	}
	long := "/" + strings.Repeat("x", qcow2MaxBackingName)
	if err := writeOverlay(filepath.Join(dir, "long"), long, "qcow2", mib); !errors.Is(err, ErrInvalid) {
		t.Errorf("backing name of %d bytes: %v, want ErrInvalid", len(long), err)
	}
	if _, err := os.Stat(filepath.Join(dir, "long")); err == nil {
		t.Error("a refused overlay was left")
	}
	if _, err := imageSize(filepath.Join(dir, "nope")); err == nil {
		t.Error("imageSize of a missing file")
	}
}
