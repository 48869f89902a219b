package vm

import (
	"context"
	"io"

	"vers/api"
	"vers/internal/agent"
	"vers/internal/image"
	"vers/internal/qemu"
	"vers/internal/rampool"
)

// The ports: what the domain needs from the hypervisor, the guest agent,
// the RAM filesystem and the image cache, as small interfaces defined here.
// internal/qemu, internal/agent, internal/rampool and internal/image
// implement them (drivers.go); the unit tests implement them with fakes that
// boot nothing. A machine is described by a qemu.Config, a pure value.

// Hypervisor starts and finds VM processes.
type Hypervisor interface {
	// Start launches cfg's VM and returns once it can be controlled. On
	// failure nothing is left running.
	Start(ctx context.Context, cfg qemu.Config) (Instance, error)
	// Attach finds cfg's running VM again (a restarted daemon); an error
	// wrapping qemu.ErrNotRunning when it is gone.
	Attach(ctx context.Context, cfg qemu.Config) (Instance, error)
	// Kill ends cfg's VM process outright, without talking to it, and
	// waits until it is gone. Nothing running is not an error.
	Kill(cfg qemu.Config) error
	// Available says why no VM with that network can be started here
	// (QEMU or the network's helper missing), or nil.
	Available(network qemu.NetMode) error
	// RotateLogs keeps a running VM's console log and its network
	// helper's log bounded, however much its guest writes or provokes.
	RotateLogs(cfg qemu.Config) error
	Disks
}

// Disks makes the qcow2 files of a VM's disk chain.
type Disks interface {
	// CreateOverlay makes path a thin overlay of backing.
	CreateOverlay(ctx context.Context, backing, backingFmt, path string, sizeMiB int) error
	// CreateBlank makes path an empty disk.
	CreateBlank(ctx context.Context, path string, sizeMiB int) error
	// Backing is the file a disk image is an overlay of, and its format
	// ("" for an image without one); Format an image's own format.
	Backing(path string) (backing, format string, err error)
	Format(path string) (string, error)
	// Rebase makes an overlay name another file, holding the same data, as
	// its backing.
	Rebase(ctx context.Context, path, backing, format string) error
}

// Instance is one running VM process under control.
type Instance interface {
	PID() int
	Config() qemu.Config
	// SetConfig records a change made to the running machine (its disk moved).
	SetConfig(qemu.Config)
	// Exited reports whether the process has gone; ShutdownReason why, as
	// the hypervisor announced it ("guest-reset" for a reboot), if it did.
	Exited() bool
	ShutdownReason() string
	// Status is the guest's run state: running, paused, io-error, ...
	Status(ctx context.Context) (string, error)
	// Pause stops the vCPUs; Cont runs them again.
	Pause(ctx context.Context) error
	Cont(ctx context.Context) error
	// Stop ends the process gracefully, then by force.
	Stop(ctx context.Context) error
	// Close lets go of the process, which keeps running.
	Close() error
	Snapshotter
	RAMStreamer
}

// Snapshotter is what a freeze does to a paused VM.
type Snapshotter interface {
	// AddOverlay opens overlay (whose backing is the current top's image)
	// as block node node, unused, and returns the current top's node;
	// SwitchDisk moves the root disk onto it, in a pause; DropOverlay
	// closes it if no switch came.
	AddOverlay(ctx context.Context, overlay, node string) (top string, err error)
	SwitchDisk(ctx context.Context, top, node string) error
	DropOverlay(ctx context.Context, node string) error
	// ActiveDisk is the file the root disk writes to now.
	ActiveDisk(ctx context.Context) (string, error)
	// SetRAMMode chooses what the next SendRAM carries.
	SetRAMMode(ctx context.Context, mode qemu.RAMMode) error
	// SaveState writes the device state, without RAM, to path, and leaves
	// a paused VM paused; LoadState reads it into a VM started with
	// Incoming (it is then paused).
	SaveState(ctx context.Context, path string) error
	LoadState(ctx context.Context, path string) error
}

// RAMStreamer moves RAM between two processes (the copy method's holder).
type RAMStreamer interface {
	ListenRAM(ctx context.Context, uri string) error
	SendRAM(ctx context.Context, uri string) error
	WaitRAMSent(ctx context.Context) (qemu.Migration, error)
	CancelMigration(ctx context.Context)
	WaitRunning(ctx context.Context) error
	WaitLoaded(ctx context.Context) error
}

// AgentDialer connects to the guest agent behind a VM's agent socket,
// retrying until ctx ends.
type AgentDialer func(ctx context.Context, socket string) (*agent.Client, error)

// RAMFiles are the operations on guest RAM files.
type RAMFiles interface {
	// Clone makes dst a copy of src that shares its blocks (FICLONE).
	Clone(src, dst string) error
	// CloneOver is Clone onto the existing dst, which a QEMU that has not
	// run its guest yet may map.
	CloneOver(src, dst string) error
	// Flush writes a running VM's dirty RAM pages to its file.
	Flush(path string) error
	// Own records on a RAM file the daemon home it belongs to, so that the
	// host's next daemon removes it once that home is deleted.
	Own(path, home string) error
	// Mapped is the ranges of the RAM file path that process pid has
	// mapped: the pages its guest touched.
	Mapped(pid int, path string) ([]rampool.Range, error)
	// Prefetch starts reading ranges of path into memory, not waiting.
	Prefetch(path string, ranges []rampool.Range) error
}

// Images is what the manager needs from the image cache.
type Images interface {
	// Ensure returns the image name, building it first if needed.
	Ensure(ctx context.Context, name string, progress io.Writer) (image.Info, error)
	// Get returns the image if it is built; Names lists the known ones.
	Get(name string) (image.Info, error)
	Names() []string
}

// Events is where the domain announces its changes (internal/events'
// Broker). Publish must not block: the domain calls it holding a VM.
type Events interface {
	Publish(api.Event)
}
