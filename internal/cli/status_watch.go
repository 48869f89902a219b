package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"vers/api"
	"vers/client"
)

// clearScreen moves the cursor home and clears the terminal.
const clearScreen = "\x1b[H\x1b[2J"

func (o *StatusOptions) checkWatch() error {
	switch {
	case !o.Watch:
		return nil
	case o.VM != "":
		return fmt.Errorf("--watch shows every VM; leave out %q: %w", o.VM, errUsage)
	case o.Quiet:
		return fmt.Errorf("--watch and -q do not go together: %w", errUsage)
	}
	return nil
}

// runWatch follows GET /v1/events: it draws the tree from the hello and
// again at every change to it — clearing the screen on a terminal, one
// tree after the other otherwise. With --format json it prints the events,
// one a line. A stream dropped for lagging is opened again (its hello
// starts over); Ctrl-C ends the watch (exit 7), and so, with an error,
// does the daemon going away.
func runWatch(ctx context.Context, o *StatusOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	ctx, stop := withSignals(ctx)
	defer stop()
	w := &treeWatcher{out: o.f.Out, tty: o.f.StdoutIsTerminal(), json: o.Format == "json", head: func() string {
		if p, err := o.f.Project(); err == nil {
			h, _ := p.Head()
			return h
		}
		return ""
	}}
	for {
		err := c.Events(ctx, w.event)
		switch {
		case ctx.Err() != nil:
			return fmt.Errorf("stopped watching: %w", errCancelled)
		case errors.Is(err, client.ErrLagged):
			continue
		case errors.Is(err, client.ErrEventsEnded), errors.Is(err, client.ErrDaemonDown):
			return fmt.Errorf("versd went away; stopped watching (%v)", err)
		}
		return err
	}
}

// treeWatcher keeps the VMs as the events leave them, and draws them.
type treeWatcher struct {
	out  io.Writer
	tty  bool
	json bool
	head func() string
	vms  []api.VM
	n    int // trees drawn
}

func (w *treeWatcher) event(e api.Event) error {
	if w.json {
		return json.NewEncoder(w.out).Encode(e)
	}
	var changed bool
	w.vms, changed = applyEvent(w.vms, e)
	if !changed {
		return nil
	}
	w.draw(e)
	return nil
}

func (w *treeWatcher) draw(e api.Event) {
	switch {
	case w.tty:
		fmt.Fprint(w.out, clearScreen)
	case w.n > 0:
		fmt.Fprintln(w.out)
	}
	w.n++
	fmt.Fprintf(w.out, "-- %s %s\n", e.Time.Local().Format("15:04:05"), describeEvent(e))
	if len(w.vms) == 0 {
		fmt.Fprintln(w.out, "No VMs. `vers run` boots one.")
		return
	}
	RenderTree(w.out, w.vms, w.head())
}

// applyEvent is vms after e, and whether the tree may look different.
// VM events are applied by id, so one that a hello already showed changes
// nothing.
func applyEvent(vms []api.VM, e api.Event) ([]api.VM, bool) {
	switch e.Type {
	case api.EventHello:
		return slices.Clone(e.VMs), true
	case api.EventVMCreated, api.EventVMState, api.EventVMBranched:
		if e.VM != nil {
			vms = upsertVM(vms, *e.VM)
		}
		for _, k := range e.Children {
			vms = upsertVM(vms, k)
		}
		return vms, true
	case api.EventVMKilled:
		return slices.DeleteFunc(vms, func(v api.VM) bool { return v.ID == e.VMID }), true
	}
	return vms, false
}

func upsertVM(vms []api.VM, v api.VM) []api.VM {
	if i := slices.IndexFunc(vms, func(x api.VM) bool { return x.ID == v.ID }); i >= 0 {
		vms[i] = v
		return vms
	}
	return append(vms, v)
}

// describeEvent is the line above a tree: what changed.
func describeEvent(e api.Event) string {
	name := e.Alias
	if name == "" {
		name = shortID(e.VMID)
	}
	switch e.Type {
	case api.EventHello:
		return fmt.Sprintf("watching %d VM(s); Ctrl-C to stop", len(e.VMs))
	case api.EventVMCreated:
		if e.Commit != "" {
			return fmt.Sprintf("%s created from commit %s", name, shortCommit(e.Commit))
		}
		return name + " created"
	case api.EventVMBranched:
		var kids []string
		for _, k := range e.Children {
			kids = append(kids, vmName(k))
		}
		return fmt.Sprintf("%s branched into %s (paused %s)", name, strings.Join(kids, ", "),
			time.Duration(e.PauseMillis*float64(time.Millisecond)).Round(100*time.Microsecond))
	case api.EventVMKilled:
		return name + " killed"
	case api.EventVMState:
		s := name + " changed"
		if e.VM != nil {
			s = name + " is " + e.VM.State
		}
		if e.Reason != "" {
			s += ": " + e.Reason
		}
		return s
	}
	return e.Type
}

func vmName(v api.VM) string {
	if v.Alias != "" {
		return v.Alias
	}
	return shortID(v.ID)
}
