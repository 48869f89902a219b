package vm

import (
	"encoding/json"
	"fmt"
	"time"

	"vers/internal/chunk"
	"vers/internal/errdefs"
	"vers/internal/qemu"
)

// manifest is a commit: everything needed to run its state again, on this
// host or another, as blobs in the chunk store. It is stored as a blob
// itself, and the commit's id is that blob's hash, so a commit is
// immutable and names its own content.
type manifest struct {
	Version     int       `json:"version"`
	Kind        string    `json:"kind"`
	CreatedAt   time.Time `json:"created_at"`
	SourceVM    string    `json:"source_vm,omitempty"`
	SourceAlias string    `json:"source_alias,omitempty"`
	Parent      string    `json:"parent,omitempty"`
	Message     string    `json:"message,omitempty"`
	// The source's sizes and image names (for display: the files are below).
	MemMiB int    `json:"mem_size_mib"`
	VCPUs  int    `json:"vcpu_count"`
	FsMiB  int    `json:"fs_size_vm_mib"`
	Kernel string `json:"kernel"`
	Rootfs string `json:"rootfs"`
	// Machine is the source's machine; its paths mean nothing elsewhere and
	// are replaced by a restore.
	Machine qemu.Config `json:"machine"`
	// RAM is guest RAM as it was in the pause; State the CPU and device
	// state, saved without RAM.
	RAM   chunk.Blob `json:"ram"`
	State chunk.Blob `json:"state"`
	// KernelFile and InitrdFile are what QEMU was started with; Disk the
	// disk chain, bottom first (the image, then each snapshot's layer).
	KernelFile chunk.Blob  `json:"kernel_file"`
	InitrdFile *chunk.Blob `json:"initrd_file,omitempty"`
	Disk       []diskLayer `json:"disk"`
}

// diskLayer is one file of a disk chain.
type diskLayer struct {
	Blob   chunk.Blob `json:"blob"`
	Format string     `json:"format"` // raw or qcow2
}

// manifestVersion is the manifest format this daemon writes and reads.
const manifestVersion = 1

// blobs is every blob the manifest names.
func (mf manifest) blobs() []chunk.Blob {
	out := []chunk.Blob{mf.RAM, mf.State, mf.KernelFile}
	if mf.InitrdFile != nil {
		out = append(out, *mf.InitrdFile)
	}
	for _, l := range mf.Disk {
		out = append(out, l.Blob)
	}
	return out
}

// logical is the size of everything the commit holds.
func (mf manifest) logical() int64 {
	var n int64
	for _, b := range mf.blobs() {
		n += b.Size
	}
	return n
}

func parseManifest(data []byte) (manifest, error) {
	var mf manifest
	if err := json.Unmarshal(data, &mf); err != nil {
		return mf, fmt.Errorf("commit manifest: %w: %w", err, errdefs.ErrInvalid)
	}
	if mf.Version != manifestVersion {
		return mf, fmt.Errorf("commit manifest version %d: this vers reads version %d; use the vers that made it: %w",
			mf.Version, manifestVersion, errdefs.ErrInvalid)
	}
	if len(mf.Disk) == 0 {
		return mf, fmt.Errorf("commit manifest names no disk: %w", errdefs.ErrInvalid)
	}
	return mf, nil
}
