package qemu

import (
	"fmt"
	"os/exec"
	"runtime"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// QEMU advises transparent huge pages (madvise MADV_HUGEPAGE) on every RAM
// block and on TCG's translation buffer, whatever they are, and has no
// option to leave it out. Where guest RAM is a file, as on the RAM pool,
// that advice is what makes a fault read the file 2–4 MiB at a time: the
// kernel reads a huge-page-advised file mapping in huge-page units whatever
// the device's read-ahead, so a child that touches 30 MiB of its RAM read
// 100 MiB through the pool's loop device, in its vCPU's page faults, and
// each page written made a 2 MiB folio dirty, which the branch's flush and
// clone then wrote back (and unshared) whole. Under TCG the translation
// buffer gains little from huge pages and pays 2 MiB zeroed at each step of
// its growth. Only guest RAM that is anonymous memory under KVM gains from
// them (fewer second-level TLB misses), so that is the one case that keeps
// QEMU's advice.
//
// Elsewhere QEMU runs under a seccomp filter that refuses that one madvise
// (EPERM; QEMU ignores the result of advice): its mappings are then
// ordinary 4 KiB ones, read with the device's read-ahead and written back
// page by page. Measured with scripts/branch-ab.sh (docs/branching.md).
func hugePagesHurt(cfg Config) bool {
	return cfg.MemPath != "" || cfg.Accel != "kvm"
}

// noHugePages is that filter. It also sets no_new_privs, which seccomp
// needs of a process without CAP_SYS_ADMIN and which QEMU, execing nothing
// setuid, does not notice.
var noHugePages = seccomp.Filter{
	NoNewPrivs: true,
	Policy: seccomp.Policy{
		DefaultAction: seccomp.ActionAllow,
		Syscalls: []seccomp.SyscallGroup{{
			Action: seccomp.ActionErrno,
			NamesWithCondtions: []seccomp.NameWithConditions{{
				Name: "madvise",
				Conditions: seccomp.ArgumentConditions{
					{Argument: 2, Operation: seccomp.Equal, Value: unix.MADV_HUGEPAGE},
				},
			}},
		}},
	},
}

// startFiltered starts cmd under filter. A seccomp filter belongs to the
// thread that loads it and to the processes that thread starts, across
// their exec; so it is loaded by a goroutine on an OS thread of its own,
// which starts cmd and then ends, taking the thread and its filter with it
// (a goroutine that exits locked to its thread ends the thread). No other
// thread of the caller is filtered.
func startFiltered(cmd *exec.Cmd, filter seccomp.Filter) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		if err := seccomp.LoadFilter(filter); err != nil {
			done <- fmt.Errorf("seccomp filter for %s: %w", cmd.Path, err)
			return
		}
		done <- cmd.Start()
	}()
	return <-done
}
