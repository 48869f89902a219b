// Package buildid tells builds of vers apart and checks the agent binary, so
// that a CLI can find a daemon of another build and a daemon can refuse an
// agent that cannot run as PID 1. It reads files only; it never starts or
// stops anything.
package buildid

import (
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
)

// Of returns the build id of the executable at path: a digest of the file's
// identity (device, inode, size, modification time). Two builds into the same
// path differ in all but the device; the same file gives the same id to every
// process, whether it runs the file or only looks at it, and reading it costs
// one stat, not a hash of the whole binary.
func Of(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return "", fmt.Errorf("%s: no file identity on this system", path)
	}
	h := sha256.Sum256(fmt.Appendf(nil, "%d:%d:%d:%d", sys.Dev, sys.Ino, st.Size(), st.ModTime().UnixNano()))
	return hex.EncodeToString(h[:8]), nil
}

// Self is the build id of the running executable. /proc/self/exe is the file
// this process runs even when its path has been deleted or replaced since.
func Self() (string, error) { return Of("/proc/self/exe") }

// SelfDeleted reports whether the running executable's file has been deleted
// (a rebuild that replaced it also deletes the old file).
func SelfDeleted() bool {
	target, err := os.Readlink("/proc/self/exe")
	return err == nil && strings.HasSuffix(target, " (deleted)")
}

// AgentBuildHint is how to build an agent that can run as PID 1.
const AgentBuildHint = "CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags='-s -w' -o bin/vers-agent ./cmd/vers-agent"

// ErrNotStatic marks an agent binary that needs a dynamic loader or shared
// libraries, which the guest's minimal root filesystem does not have: as PID 1
// it would fail to start and the guest kernel would panic.
var ErrNotStatic = errors.New("not statically linked")

// CheckStatic returns nil when path is a statically linked ELF executable:
// no program interpreter (PT_INTERP) and no needed shared library
// (DT_NEEDED).
func CheckStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("agent %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("agent %s needs a dynamic loader: %w", path, ErrNotStatic)
		}
	}
	libs, err := f.ImportedLibraries()
	if err != nil {
		return fmt.Errorf("agent %s: %w", path, err)
	}
	if len(libs) > 0 {
		return fmt.Errorf("agent %s needs shared libraries (%s): %w", path, strings.Join(libs, ", "), ErrNotStatic)
	}
	return nil
}
