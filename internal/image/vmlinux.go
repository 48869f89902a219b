package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"
)

// A compressed kernel payload format: the magic that starts it inside a
// bzImage, and how to decompress it. Go's standard library only covers
// gzip; the others use the host's decompressor, named by its apt package.
type codec struct {
	name  string
	magic []byte
	tool  string // host command; "" means decompressed in Go
	args  []string
	pkg   string // apt package providing tool
}

// codecs in the order they are tried; Debian's bookworm kernel is xz
// (CONFIG_KERNEL_XZ=y).
var codecs = []codec{
	{name: "xz", magic: []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, tool: "xz", args: []string{"-dc", "--single-stream"}, pkg: "xz-utils"},
	{name: "zstd", magic: []byte{0x28, 0xb5, 0x2f, 0xfd}, tool: "zstd", args: []string{"-dc"}, pkg: "zstd"},
	{name: "gzip", magic: []byte{0x1f, 0x8b, 0x08}},
	{name: "lz4", magic: []byte{0x02, 0x21, 0x4c, 0x18}, tool: "lz4", args: []string{"-dc"}, pkg: "lz4"},
	{name: "lzma", magic: []byte{0x5d, 0x00, 0x00}, tool: "xz", args: []string{"-dc", "--format=lzma"}, pkg: "xz-utils"},
	{name: "bzip2", magic: []byte{'B', 'Z', 'h'}, tool: "bzip2", args: []string{"-dc"}, pkg: "bzip2"},
	{name: "lzo", magic: []byte{0x89, 'L', 'Z', 'O', 0x00, '\r', '\n', 0x1a, '\n'}, tool: "lzop", args: []string{"-dc"}, pkg: "lzop"},
}

// ExtractVmlinux finds the compressed kernel inside a bzImage (vmlinuz),
// decompresses it and returns the uncompressed ELF, which QEMU's microvm can
// boot directly through its PVH entry point. It first trusts the bzImage
// header's payload fields, then falls back to scanning for every known
// compression magic; the first candidate that decompresses to an x86-64 ELF
// wins, so false magic matches are harmless.
func ExtractVmlinux(ctx context.Context, vmlinuz []byte) ([]byte, string, error) {
	var tried []string
	try := func(c codec, payload []byte) ([]byte, bool) {
		out, err := decompress(ctx, c, payload)
		if err != nil {
			var missing *missingToolError
			if errors.As(err, &missing) {
				tried = append(tried, err.Error())
			}
			return nil, false
		}
		return out, isKernelELF(out)
	}
	if payload, ok := bzImagePayload(vmlinuz); ok {
		for _, c := range codecs {
			if bytes.HasPrefix(payload, c.magic) {
				if out, ok := try(c, payload); ok {
					return out, c.name, nil
				}
			}
		}
	}
	for _, c := range codecs {
		// Short magics (lzma's is 3 bytes) match often by chance; a real
		// payload sits near the start of the image, so a few tries suffice.
		for off, n := 0, 0; n < maxCandidates; n++ {
			i := bytes.Index(vmlinuz[off:], c.magic)
			if i < 0 {
				break
			}
			if err := ctx.Err(); err != nil {
				return nil, "", err
			}
			if out, ok := try(c, vmlinuz[off+i:]); ok {
				return out, c.name, nil
			}
			off += i + 1
		}
	}
	if len(tried) > 0 {
		return nil, "", fmt.Errorf("no kernel ELF found in vmlinuz (%s): %w", tried[0], ErrMissingTool)
	}
	return nil, "", fmt.Errorf("no compressed kernel ELF found in vmlinuz: %w", ErrInvalid)
}

// bzImagePayload returns the compressed payload described by the x86 boot
// protocol header (payload_offset/payload_length, boot protocol >= 2.08).
func bzImagePayload(img []byte) ([]byte, bool) {
	if len(img) < 0x250 || string(img[0x202:0x206]) != "HdrS" {
		return nil, false
	}
	if binary.LittleEndian.Uint16(img[0x206:]) < 0x208 {
		return nil, false
	}
	setupSects := int(img[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	start := (setupSects + 1) * 512
	off := int(binary.LittleEndian.Uint32(img[0x248:]))
	n := int(binary.LittleEndian.Uint32(img[0x24c:]))
	if n == 0 || start+off+n > len(img) || start+off < start {
		return nil, false
	}
	return img[start+off : start+off+n], true
}

type missingToolError struct{ tool, pkg string }

func (e *missingToolError) Error() string {
	return fmt.Sprintf("%s not found; install it with: apt-get install %s", e.tool, e.pkg)
}
func (e *missingToolError) Unwrap() error { return ErrMissingTool }

const maxCandidates = 16

// maxKernel bounds decompression so that a false magic match cannot eat memory.
const maxKernel = 512 << 20

func decompress(ctx context.Context, c codec, payload []byte) ([]byte, error) {
	if c.tool == "" {
		zr, err := gzip.NewReader(bytes.NewReader(payload))
		if err != nil {
			return nil, err
		}
		zr.Multistream(false)
		out, err := io.ReadAll(io.LimitReader(zr, maxKernel))
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, err
		}
		return out, nil
	}
	bin, err := lookTool(c.tool, c.pkg)
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, bin, c.args...)
	cmd.Stdin = bytes.NewReader(payload)
	var out bytes.Buffer
	cmd.Stdout = &limitedBuffer{buf: &out, max: maxKernel}
	// Trailing data after the stream makes some decompressors exit non-zero
	// after writing everything; the ELF check decides, not the exit code.
	_ = cmd.Run()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return out.Bytes(), nil
}

type limitedBuffer struct {
	buf *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if l.buf.Len()+len(p) > l.max {
		return 0, errors.New("decompressed output too large")
	}
	return l.buf.Write(p)
}

func isKernelELF(b []byte) bool {
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return false
	}
	defer f.Close()
	return f.Class == elf.ELFCLASS64 && f.Machine == elf.EM_X86_64 && f.Type == elf.ET_EXEC
}

// xenElfnotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit PVH entry
// point that lets QEMU boot an uncompressed vmlinux without a bootloader.
const xenElfnotePhys32Entry = 18

// PVHEntry returns the PVH entry address recorded in an ELF kernel's "Xen"
// note, or ErrInvalid if the kernel has none (it cannot boot on microvm).
func PVHEntry(kernel io.ReaderAt) (uint64, error) {
	f, err := elf.NewFile(kernel)
	if err != nil {
		return 0, fmt.Errorf("kernel is not an ELF file: %w", ErrInvalid)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data, err := io.ReadAll(p.Open())
		if err != nil {
			return 0, fmt.Errorf("read ELF notes: %w", err)
		}
		if addr, ok := findNote(data, f.ByteOrder, "Xen", xenElfnotePhys32Entry); ok {
			return addr, nil
		}
	}
	return 0, fmt.Errorf("kernel has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY): %w", ErrInvalid)
}

func findNote(data []byte, bo binary.ByteOrder, owner string, typ uint32) (uint64, bool) {
	align4 := func(n int) int { return (n + 3) &^ 3 }
	for len(data) >= 12 {
		namesz := int(bo.Uint32(data[0:]))
		descsz := int(bo.Uint32(data[4:]))
		t := bo.Uint32(data[8:])
		data = data[12:]
		if namesz > len(data) || align4(namesz)+descsz > len(data) {
			return 0, false
		}
		name := string(bytes.TrimRight(data[:namesz], "\x00"))
		desc := data[align4(namesz) : align4(namesz)+descsz]
		if name == owner && t == typ {
			switch len(desc) {
			case 4:
				return uint64(bo.Uint32(desc)), true
			case 8:
				return bo.Uint64(desc), true
			}
		}
		next := align4(namesz) + align4(descsz)
		if next > len(data) {
			return 0, false
		}
		data = data[next:]
	}
	return 0, false
}
