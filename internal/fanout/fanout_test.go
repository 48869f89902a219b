package fanout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"vers/api"
)

func vm(id, parent string, minute int) api.VM {
	return api.VM{ID: id, Alias: "a-" + id, ParentID: parent, CreatedAt: time.Date(2026, 1, 1, 0, minute, 0, 0, time.UTC)}
}

func ids(vms []api.VM) []string {
	out := []string{}
	for _, v := range vms {
		out = append(out, v.ID)
	}
	return out
}

func TestSubtreeAndChildren(t *testing.T) {
	// Created out of order: children are oldest first, ties by id.
	all := []api.VM{vm("r", "", 0), vm("c2", "r", 5), vm("c1", "r", 3), vm("g1", "c1", 7), vm("c0", "r", 3), vm("x", "", 1)}
	if got := ids(Children(all, "r")); !reflect.DeepEqual(got, []string{"c0", "c1", "c2"}) {
		t.Errorf("children %v", got)
	}
	if got := ids(Subtree(all, all[0])); !reflect.DeepEqual(got, []string{"r", "c0", "c1", "g1", "c2"}) {
		t.Errorf("subtree %v", got)
	}
	if got := ids(Children(all, "g1")); len(got) != 0 {
		t.Errorf("a leaf's children %v", got)
	}
}

func TestGroup(t *testing.T) {
	row := func(id string, code int, out string) api.FanoutRow {
		return api.FanoutRow{VM: api.VMRef{ID: id}, ExitCode: code, Stdout: out}
	}
	errRow := func(id, msg string) api.FanoutRow {
		return api.FanoutRow{VM: api.VMRef{ID: id}, ExitCode: 255, Error: &api.Error{Code: api.CodeConflict, Message: msg}}
	}
	rows := []api.FanoutRow{
		row("a", 0, "x\n"), row("b", 0, "y\n"), row("c", 0, "x\n"), row("d", 1, "x\n"),
		errRow("e", "vm e is dead"), errRow("f", "vm e is dead"), {VM: api.VMRef{ID: "g"}, Stdout: "x\n", TimedOut: true},
	}
	res := Result("cmd", rows)
	var groups []int
	for _, r := range res.Results {
		groups = append(groups, r.Group)
	}
	if !reflect.DeepEqual(groups, []int{1, 2, 1, 3, 4, 4, 5}) {
		t.Errorf("groups of the rows %v", groups)
	}
	if len(res.Groups) != 5 || len(res.Groups[0].VMs) != 2 || res.Groups[0].VMs[1].ID != "c" || res.Groups[3].ExitCode != 255 {
		t.Errorf("groups %+v", res.Groups)
	}
	if res.ExitCode != 255 || res.Command != "cmd" {
		t.Errorf("exit %d, command %q", res.ExitCode, res.Command)
	}
}

func TestRunBoundedAndInOrder(t *testing.T) {
	var vms []api.VM
	for i := range 40 {
		vms = append(vms, vm(fmt.Sprint(i), "", i))
	}
	var now, most atomic.Int32
	started, release := make(chan struct{}, len(vms)), make(chan struct{})
	one := func(ctx context.Context, v api.VM) api.FanoutRow {
		n := now.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		started <- struct{}{}
		<-release
		now.Add(-1)
		return api.FanoutRow{VM: Ref(v), Stdout: v.ID}
	}
	done := make(chan api.FanoutResult)
	go func() {
		done <- Run(t.Context(), "c", vms, one, func(v api.VM, err error) api.FanoutRow { t.Errorf("%s failed: %v", v.ID, err); return api.FanoutRow{} })
	}()
	// Parallel commands start before any ends; then they are let go.
	for range Parallel {
		<-started
	}
	close(release)
	res := <-done
	for i, r := range res.Results {
		if r.VM.ID != vms[i].ID || r.Stdout != vms[i].ID {
			t.Fatalf("row %d is %+v, want %s's", i, r, vms[i].ID)
		}
	}
	if m := most.Load(); m != Parallel {
		t.Errorf("at most %d commands at once, want %d", m, Parallel)
	}
	if len(res.Groups) != 40 {
		t.Errorf("%d groups of 40 different outputs", len(res.Groups))
	}
}

func TestRunCancelled(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	why := errors.New("stopped")
	cancel(why)
	vms := []api.VM{vm("a", "", 0), vm("b", "", 1)}
	var ran atomic.Int32
	one := func(ctx context.Context, v api.VM) api.FanoutRow {
		ran.Add(1)
		return api.FanoutRow{VM: Ref(v), ExitCode: 255, Error: &api.Error{Message: context.Cause(ctx).Error()}}
	}
	failed := func(v api.VM, err error) api.FanoutRow {
		return api.FanoutRow{VM: Ref(v), ExitCode: 255, Error: &api.Error{Message: err.Error()}}
	}
	res := Run(ctx, "c", vms, one, failed)
	for _, r := range res.Results {
		if r.Error == nil || r.Error.Message != "stopped" {
			t.Errorf("row %+v, want the cause", r)
		}
	}
	if res.ExitCode != 255 || len(res.Groups) != 1 {
		t.Errorf("exit %d, %d groups", res.ExitCode, len(res.Groups))
	}
}

func TestCappedBuffer(t *testing.T) {
	b := &CappedBuffer{Max: 5}
	io.WriteString(b, "abc")
	io.WriteString(b, "defg")
	if b.String() != "abcde" || b.Dropped() != 2 {
		t.Errorf("%q, dropped %d", b.String(), b.Dropped())
	}
	b = &CappedBuffer{Max: 2}
	b.Write([]byte("\xffok"))
	if b.String() != "\uFFFDo" {
		t.Errorf("invalid UTF-8 kept as %q", b.String())
	}
}
