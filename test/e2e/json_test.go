package e2e

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"vers/api"
)

// decodeJSON decodes out, one JSON value, into v, refusing fields v's type
// lacks: the output is that API type.
func decodeJSON(t *testing.T, what, out string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil || dec.More() {
		t.Fatalf("%s: %q is no %T: %v", what, out, v, err)
	}
}

// TestInfoAndJSON: `vers info --format json` of a running VM says what it
// is and uses (its QEMU's PSS, its accelerator, its disk layer), and after a
// branch its child and the branch's pause; status, branch and kill print
// their API types; an error is the JSON error object with the usual exit.
func TestInfoAndJSON(t *testing.T) {
	requireVMs(t)
	p := newProject(t)
	p.must("init")
	alias := uniqueAlias(t, "info")
	var vm api.VM
	decodeJSON(t, "run", p.must("run", "--vm-alias", alias, "--format", "json"), &vm)
	defer p.vers("kill", "-r", alias)

	var info api.VMInfo
	decodeJSON(t, "info", p.must("info", "--format", "json"), &info)
	t.Logf("info: %+v", info)
	switch {
	case info.ID != vm.ID || info.Alias != alias || info.State != api.StateRunning:
		t.Errorf("info names %s %q %s; ran %s %q", info.ID, info.Alias, info.State, vm.ID, alias)
	case info.Accel != "kvm" && info.Accel != "tcg":
		t.Errorf("accelerator %q", info.Accel)
	case info.Memory.PSSBytes <= 0 || info.Memory.PSSBytes > int64(info.MemMiB+512)<<20:
		t.Errorf("PSS %d bytes for a VM of %d MiB", info.Memory.PSSBytes, info.MemMiB)
	case info.Disk.Overlay == "" || info.Disk.ChainLength < 2 || info.Network != "isolated":
		t.Errorf("disk %+v, network %q", info.Disk, info.Network)
	case info.CreatedAt.IsZero() || len(info.Children) != 0 || info.LastPause != nil:
		t.Errorf("created %s, children %v, pause %+v", info.CreatedAt, info.Children, info.LastPause)
	}
	// Under TCG the programs vers starts run at fixed addresses (and what
	// they start, too); under KVM they stay randomized (VERS_EXEC_ASLR).
	want := "00000000"
	if info.Accel == "tcg" {
		want = "00040000"
	}
	if got := strings.TrimSpace(p.must("execute", "sh -c 'cat /proc/self/personality'")); got != want {
		t.Errorf("personality of an executed program on %s: %s, want %s", info.Accel, got, want)
	}

	var br api.BranchResponse
	decodeJSON(t, "branch", p.must("branch", "--alias", alias+"-kid", "--format", "json"), &br)
	if len(br.Children) != 1 || br.Parent.ID != vm.ID {
		t.Fatalf("branch: %+v", br)
	}
	decodeJSON(t, "info", p.must("info", alias, "--format", "json"), &info)
	if len(info.Children) != 1 || info.Children[0] != br.Children[0].ID || info.LastPause == nil || info.LastPause.Op != "branch" {
		t.Errorf("after a branch: children %v, pause %+v", info.Children, info.LastPause)
	}
	if !strings.Contains(p.must("info", alias), "Last pause:") {
		t.Error("the text of info has no pause")
	}

	var vms []struct {
		api.VM
		Head bool `json:"head"`
	}
	decodeJSON(t, "status", p.must("status", "--format", "json"), &vms)
	r := p.expect(3, "", "info", "no-such-vm", "--format", "json")
	var cliErr api.CLIError
	decodeJSON(t, "info error", r.err, &cliErr)
	if cliErr.Error.Code != api.CodeNotFound || r.out != "" {
		t.Errorf("info of no VM: %+v, stdout %q", cliErr, r.out)
	}
	r = p.expect(4, "", "kill", alias, "--format", "json")
	decodeJSON(t, "kill error", r.err, &cliErr)
	if cliErr.Error.Code != api.CodeConflict {
		t.Errorf("kill of a parent: %+v", cliErr)
	}
	var del api.DeleteVMResponse
	decodeJSON(t, "kill", p.must("kill", "-r", alias, "--format", "json"), &del)
	if len(del.Deleted) != 2 || !bytes.Contains([]byte(strings.Join(del.Deleted, " ")), []byte(vm.ID)) {
		t.Errorf("kill -r: %+v", del)
	}
}
