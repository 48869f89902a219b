package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestExecuteForms: the first word is a VM only when it names one, or
// when "--" follows it; vers's flags may follow the VM.
func TestExecuteForms(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	alias := uniqueAlias(t, "forms")
	p.must("run", "--vm-alias", alias)
	defer p.vers("kill", alias)

	if out := p.must("execute", "ls", "-d", "/root"); strings.TrimSpace(out) != "/root" {
		t.Fatalf("ls -d /root in HEAD: %q", out)
	}
	if out := p.must("execute", alias, "--timeout", "30s", "-e", "X=from-flag", "echo $X"); strings.TrimSpace(out) != "from-flag" {
		t.Fatalf("flags after VM: %q", out)
	}
	if out := p.must("execute", alias, "--", "echo", "--timeout"); strings.TrimSpace(out) != "--timeout" {
		t.Fatalf("after --: %q", out)
	}
	// A command's exit codes that vers also uses stay the command's.
	p.expect(4, "", "execute", "exit 4")
	p.expect(255, "vers: not_found:", "execute", "no-such-vm", "--", "true")
}

// TestExecuteDeadline: with the VM's QEMU stopped, --timeout is kept by the
// CLI, and a signal ends vers at once.
func TestExecuteDeadline(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	alias := uniqueAlias(t, "deadline")
	p.must("run", "--vm-alias", alias)
	v, _ := p.find(alias)
	if err := syscall.Kill(v.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer func() {
		syscall.Kill(v.PID, syscall.SIGCONT)
		p.vers("kill", alias)
	}()

	// Whichever comes first: the CLI's own deadline, or versd finding that
	// the VM's QEMU does not answer (it checks within 3 s).
	r := p.vers("execute", "--timeout", "3s", "true")
	if r.code != 255 || !(strings.Contains(r.err, "vers: timeout:") || strings.Contains(r.err, "not answering")) {
		t.Fatalf("--timeout 3s on a stopped QEMU: exit %d: %s", r.code, r.err)
	}
	if r.dur > 6*time.Second {
		t.Fatalf("--timeout 3s took %s", r.dur)
	}

	// timeout(1) sends SIGTERM after 2s: vers ends then, not when the VM answers.
	start := time.Now()
	cmd := exec.Command("timeout", "2", filepath.Join(binDir, "vers"), "execute", "sleep 100")
	cmd.Dir = p.dir
	err := cmd.Run()
	if took := time.Since(start); took > 6*time.Second {
		t.Fatalf("SIGTERM ended vers after %s", took)
	}
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 124 {
		t.Fatalf("timeout(1) says %v, want its 124 (vers ended on SIGTERM)", err)
	}
}
