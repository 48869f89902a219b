package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"os/exec"
	"testing"
)

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func xzHost(t *testing.T, b []byte) []byte {
	t.Helper()
	if _, err := exec.LookPath("xz"); err != nil {
		t.Skip("xz not installed")
	}
	cmd := exec.Command("xz", "-c", "--check=crc32")
	cmd.Stdin = bytes.NewReader(b)
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// bzImage wraps a payload the way the x86 boot protocol lays it out: one
// setup sector after the boot sector, then the decompressor stub, then the
// payload, then trailing data.
func bzImage(payload []byte, header bool) []byte {
	img := make([]byte, 2*512)
	copy(img[0x1fe:], []byte{0x55, 0xaa})
	if header {
		img[0x1f1] = 1
		copy(img[0x202:], "HdrS")
		binary.LittleEndian.PutUint16(img[0x206:], 0x20f)
	}
	stub := bytes.Repeat([]byte{0x90, 0x1f, 0x8b}, 100) // decoy bytes
	binary.LittleEndian.PutUint32(img[0x248:], uint32(len(stub)))
	binary.LittleEndian.PutUint32(img[0x24c:], uint32(len(payload)))
	img = append(img, stub...)
	img = append(img, payload...)
	return append(img, bytes.Repeat([]byte{0xfd, '7', 'z'}, 50)...)
}

func TestExtractVmlinux(t *testing.T) {
	kernel := fakeKernel(true, 0x1000850)
	notELF := bytes.Repeat([]byte("not a kernel "), 100)
	tests := []struct {
		name      string
		img       func(t *testing.T) []byte
		wantCodec string
		wantErr   error
	}{
		{"gzip via header", func(*testing.T) []byte { return bzImage(gz(kernel), true) }, "gzip", nil},
		{"gzip by magic scan", func(*testing.T) []byte { return bzImage(gz(kernel), false) }, "gzip", nil},
		{"xz via header", func(t *testing.T) []byte { return bzImage(xzHost(t, kernel), true) }, "xz", nil},
		{"xz by magic scan", func(t *testing.T) []byte { return bzImage(xzHost(t, kernel), false) }, "xz", nil},
		{"decoy stream before the kernel", func(*testing.T) []byte {
			return bzImage(append(gz(notELF), gz(kernel)...), false)
		}, "gzip", nil},
		{"no ELF inside", func(*testing.T) []byte { return bzImage(gz(notELF), true) }, "", ErrInvalid},
		{"no payload", func(*testing.T) []byte { return []byte("plain junk") }, "", ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, codec, err := ExtractVmlinux(context.Background(), tt.img(t))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if codec != tt.wantCodec || !bytes.Equal(got, kernel) {
				t.Fatalf("codec %s, %d bytes; want %s, the %d-byte kernel", codec, len(got), tt.wantCodec, len(kernel))
			}
		})
	}
}

func TestPVHEntry(t *testing.T) {
	addr, err := PVHEntry(bytes.NewReader(fakeKernel(true, 0x1000850)))
	if err != nil || addr != 0x1000850 {
		t.Fatalf("PVHEntry = %#x, %v; want 0x1000850", addr, err)
	}
	if _, err := PVHEntry(bytes.NewReader(fakeKernel(false, 0))); !errors.Is(err, ErrInvalid) {
		t.Fatalf("kernel without PVH note: err = %v, want ErrInvalid", err)
	}
	if _, err := PVHEntry(bytes.NewReader([]byte("MZ not elf"))); !errors.Is(err, ErrInvalid) {
		t.Fatalf("non-ELF: err = %v, want ErrInvalid", err)
	}
}
