package cli

import (
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"vers/api"
	"vers/internal/project"
)

const sibID = "66666666-0000-0000-0000-000000000000"

// pickEnv is treeEnv with a third child of db-root: db-root → other →
// grand, db-root → dead-kid, db-root → sib.
func pickEnv(t *testing.T) *env {
	e := treeEnv(t, nil)
	e.d.vms = append(e.d.vms, api.VM{ID: sibID, Alias: "sib", State: api.StateRunning, ParentID: rootID, CreatedAt: time.Now().Add(5 * time.Second)})
	return e
}

// otherProject is a project directory whose HEAD is id, reported to versd.
func otherProject(t *testing.T, e *env, id string) string {
	dir := t.TempDir()
	if _, err := project.Init(dir); err != nil {
		t.Fatal(err)
	}
	p, _ := project.Find(dir)
	if err := p.SetHead(id); err != nil {
		t.Fatal(err)
	}
	e.d.SetHead(t.Context(), p.Dir, id)
	return p.Dir
}

func TestPickKillsSiblingsKeepsParentAndKids(t *testing.T) {
	e := pickEnv(t)
	if code := e.run("pick", "33333333", "--format", "json"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	var res api.PickResult
	if err := json.Unmarshal(e.out.Bytes(), &res); err != nil {
		t.Fatal(err)
	}
	slices.Sort(e.d.deleted)
	if res.Kept.ID != otherID || len(res.Killed) != 2 || fmtList(e.d.deleted) != fmtList([]string{deadID, sibID}) {
		t.Errorf("kept %+v, killed %+v, deleted %v", res.Kept, res.Killed, e.d.deleted)
	}
	for _, keep := range []string{rootID, otherID, grandID} {
		if _, err := e.d.find(keep); err != nil {
			t.Errorf("%s was killed", keep)
		}
	}
}

func fmtList(s []string) string { return strings.Join(s, ",") }

func TestPickDryRun(t *testing.T) {
	e := pickEnv(t)
	if code := e.run("pick", "sib", "--dry-run"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	if len(e.d.deleted) != 0 {
		t.Fatalf("a dry run killed %v", e.d.deleted)
	}
	want := "Kept sib. Would kill 3 VMs: 33333333, grand, dead-kid\n"
	if e.out.String() != want {
		t.Errorf("got %q, want %q", e.out, want)
	}
}

func TestPickHeadGuard(t *testing.T) {
	e := pickEnv(t)
	other := otherProject(t, e, grandID)
	code := e.run("pick", "sib")
	if code != ExitConflict || !strings.Contains(e.errOut.String(), "vm grand is HEAD of "+other) || !strings.Contains(e.errOut.String(), "--force") {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	if len(e.d.deleted) != 0 {
		t.Fatalf("killed %v after refusing", e.d.deleted)
	}
	// The dry run names the directory and kills nothing.
	if code := e.run("pick", "sib", "--dry-run"); code != 0 || !strings.Contains(e.out.String(), "vm grand is HEAD of "+other) || len(e.d.deleted) != 0 {
		t.Fatalf("exit %d: %s %v", code, e.out, e.d.deleted)
	}
	if code := e.run("pick", "sib", "--force"); code != 0 || !strings.Contains(e.out.String(), "vm grand was HEAD of "+other) {
		t.Fatalf("exit %d: %s%s", code, e.out, e.errOut)
	}
	if len(e.d.deleted) != 3 {
		t.Errorf("deleted %v", e.d.deleted)
	}
}

// TestPickStaleHeads: a directory whose HEAD moved on, or that is gone, is
// no obstacle; this directory's HEAD follows the winner.
func TestPickStaleHeads(t *testing.T) {
	e := pickEnv(t)
	moved := otherProject(t, e, deadID)
	p, _ := project.Find(moved)
	p.SetHead(rootID) // without telling versd
	gone := otherProject(t, e, sibID)
	if err := os.RemoveAll(gone); err != nil {
		t.Fatal(err)
	}
	if err := moveHead(t.Context(), e.d, e.proj, deadID); err != nil {
		t.Fatal(err)
	}
	if code := e.run("pick", "33333333"); code != 0 {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	if e.head() != otherID {
		t.Errorf("HEAD is %s, want the VM kept", e.head())
	}
	if h := e.d.heads[len(e.d.heads)-1]; h.Dir != e.proj.Dir || h.VMID != otherID {
		t.Errorf("versd was told %+v", h)
	}
}

func TestPickRefusals(t *testing.T) {
	e := pickEnv(t)
	if code := e.run("pick", "db-root"); code != ExitInvalid || !strings.Contains(e.errOut.String(), "was not branched from another VM") {
		t.Errorf("exit %d: %s", code, e.errOut)
	}
	if code := e.run("pick", "nope"); code != ExitNotFound {
		t.Errorf("exit %d: %s", code, e.errOut)
	}
	if code := e.run("pick", "grand"); code != 0 || !strings.Contains(e.out.String(), "it has no siblings") {
		t.Errorf("exit %d: %s", code, e.out)
	}
}

// TestPickKillFails: a kill that fails says what was killed before it, and
// HEAD still leaves a VM that is gone.
func TestPickKillFails(t *testing.T) {
	e := pickEnv(t)
	moveHead(t.Context(), e.d, e.proj, deadID)
	fail := errors.New("disk on fire")
	calls := 0
	e.d.deleteHook = func(id string) error {
		if calls++; calls == 2 {
			return fail
		}
		return nil
	}
	code := e.run("pick", "33333333")
	if code != ExitError || !strings.Contains(e.errOut.String(), "kill sib: disk on fire (killed before it: dead-kid)") {
		t.Fatalf("exit %d: %s", code, e.errOut)
	}
	if e.head() != otherID {
		t.Errorf("HEAD %s names a VM that is gone", e.head())
	}
}
