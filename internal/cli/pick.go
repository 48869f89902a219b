package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"vers/api"
	"vers/internal/errdefs"
	"vers/internal/fanout"
	"vers/internal/project"
)

// PickOptions: `vers pick VM`, best of N: keep VM, kill its siblings.
type PickOptions struct {
	f      *Factory
	Client clientFunc
	VM     string
	DryRun bool
	Force  bool
	Format string
}

func NewCmdPick(f *Factory, runF func(context.Context, *PickOptions) error) *cobra.Command {
	opts := &PickOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:               "pick VM [--dry-run] [--force]",
		ValidArgsFunction: completeArgs(f, false, vmArgs),
		Short:             "Keep VM and kill its siblings and everything branched from them",
		Long: `Keep the best of N: VM stays, and every other child of VM's parent is
killed with its descendants. The parent stays. --dry-run lists what would go
and kills nothing.

A sibling that is the HEAD of another project directory is not killed: pick
refuses (exit 4) and names the directory, unless --force. If this
directory's HEAD is among the VMs killed, HEAD moves to VM.`,
		Args: usageArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.VM = args[0]
			if opts.VM == "" {
				return fmt.Errorf("the VM is empty: give the alias or id of the VM to keep: %w", errUsage)
			}
			return dispatch(cmd, opts.Format, opts, runF, runPick)
		},
	}
	cmd.Flags().BoolVar(&opts.DryRun, "dry-run", false, "list what would be killed; kill nothing")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "kill siblings that are the HEAD of another project directory too")
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json")
	return cmd
}

func runPick(ctx context.Context, o *PickOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	res, doomed, err := pickVM(ctx, o.f, c, o.VM, o.DryRun, o.Force)
	if err != nil {
		return err
	}
	return o.print(res, doomed)
}

// pickVM is `vers pick` without its printing: it keeps vm and kills its
// siblings with their subtrees (with dry, only says which), unless one is
// another project directory's HEAD and not force. It returns the result
// and every VM that goes (or would).
func pickVM(ctx context.Context, f *Factory, c Daemon, vm string, dry, force bool) (api.PickResult, []api.VM, error) {
	keep, err := c.GetVM(ctx, vm)
	if err != nil {
		return api.PickResult{}, nil, err
	}
	if keep.ParentID == "" {
		return api.PickResult{}, nil, fmt.Errorf("vm %s was not branched from another VM, so it has no siblings to drop: %w", label(keep), errdefs.ErrInvalid)
	}
	all, err := c.ListVMs(ctx)
	if err != nil {
		return api.PickResult{}, nil, err
	}
	var siblings, doomed []api.VM
	for _, s := range fanout.Children(all, keep.ParentID) {
		if s.ID != keep.ID {
			siblings = append(siblings, s)
			doomed = append(doomed, fanout.Subtree(all, s)...)
		}
	}
	p, _ := f.Project() // outside a project, no HEAD of its own
	others, err := otherHeads(ctx, c, p, doomed)
	if err != nil {
		return api.PickResult{}, nil, err
	}
	if len(others) > 0 && !force && !dry {
		return api.PickResult{}, nil, headsInTheWay(others, doomed)
	}
	res := api.PickResult{Kept: vmRef(keep), Killed: []api.VMRef{}, DryRun: dry, Heads: others}
	if dry {
		for _, v := range doomed {
			res.Killed = append(res.Killed, vmRef(v))
		}
		return res, doomed, nil
	}
	var killErr error
	for _, s := range siblings {
		out, err := c.DeleteVM(ctx, s.ID, true)
		for _, id := range out.Deleted {
			res.Killed = append(res.Killed, refOf(all, id))
		}
		if err != nil {
			killErr = fmt.Errorf("kill %s: %w", label(s), err)
			break
		}
	}
	// This directory's HEAD follows the winner, also when a kill failed
	// part way: it must not name a VM that is gone.
	if p != nil {
		if head, _ := p.Head(); head != "" && killed(res.Killed, head) {
			if err := moveHead(ctx, c, p, keep.ID); err != nil && killErr == nil {
				killErr = err
			}
		}
	}
	if killErr != nil {
		if len(res.Killed) > 0 {
			return res, doomed, fmt.Errorf("%w (killed before it: %s)", killErr, refList(res.Killed))
		}
		return res, doomed, killErr
	}
	return res, doomed, nil
}

// otherHeads are the heads of other project directories that name a VM in
// doomed. versd's record is checked against the directory's HEAD file where
// this host can read it, so a directory that has moved on (or is gone) is
// no obstacle; where it cannot be read, the record stands.
func otherHeads(ctx context.Context, c Daemon, p *project.Project, doomed []api.VM) ([]api.Head, error) {
	heads, err := c.ListHeads(ctx)
	if err != nil {
		return nil, err
	}
	var out []api.Head
	for _, h := range heads {
		if !inVMs(doomed, h.VMID) || (p != nil && filepath.Clean(p.Dir) == h.Dir) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(h.Dir, project.StateDir, "HEAD"))
		switch {
		case err == nil && strings.TrimSpace(string(b)) != h.VMID:
			continue // moved since
		case os.IsNotExist(err):
			if _, serr := os.Stat(h.Dir); os.IsNotExist(serr) {
				continue // the directory is gone
			}
		}
		out = append(out, h)
	}
	return out, nil
}

func headsInTheWay(heads []api.Head, vms []api.VM) error {
	var lines []string
	for _, h := range heads {
		lines = append(lines, fmt.Sprintf("vm %s is HEAD of %s", aliasOf(vms, h.VMID), h.Dir))
	}
	return fmt.Errorf("%s; `vers checkout` there moves it, or pass --force to kill it anyway; nothing was killed: %w",
		strings.Join(lines, "; "), errdefs.ErrConflict)
}

func (o *PickOptions) print(res api.PickResult, doomed []api.VM) error {
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(res)
	}
	w := o.f.Out
	verb := "Killed"
	if o.DryRun {
		verb = "Would kill"
	}
	switch {
	case len(res.Killed) == 0:
		fmt.Fprintf(w, "Kept %s; it has no siblings, nothing was killed\n", refLabel(res.Kept))
	default:
		fmt.Fprintf(w, "Kept %s. %s %s: %s\n", refLabel(res.Kept), verb, plural(len(res.Killed), "VM"), refList(res.Killed))
	}
	writeHeads(w, res.Heads, doomed, o.DryRun)
	return nil
}

func writeHeads(w io.Writer, heads []api.Head, vms []api.VM, dry bool) {
	for _, h := range heads {
		what := "was"
		if dry {
			what = "is"
		}
		fmt.Fprintf(w, "  vm %s %s HEAD of %s\n", aliasOf(vms, h.VMID), what, h.Dir)
	}
}

func refList(refs []api.VMRef) string {
	names := make([]string, len(refs))
	for i, r := range refs {
		names[i] = refLabel(r)
	}
	return strings.Join(names, ", ")
}

func inVMs(vms []api.VM, id string) bool {
	for _, v := range vms {
		if v.ID == id {
			return true
		}
	}
	return false
}

func killed(refs []api.VMRef, id string) bool {
	for _, r := range refs {
		if r.ID == id {
			return true
		}
	}
	return false
}

// refOf is the VM id among vms.
func refOf(vms []api.VM, id string) api.VMRef {
	for _, v := range vms {
		if v.ID == id {
			return vmRef(v)
		}
	}
	return api.VMRef{ID: id}
}

// aliasOf names the VM id among vms: its alias, or its short id.
func aliasOf(vms []api.VM, id string) string { return refLabel(refOf(vms, id)) }
