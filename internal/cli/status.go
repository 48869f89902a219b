package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"vers/api"
)

type StatusOptions struct {
	f      *Factory
	Client clientFunc
	VM     string
	Format string
	Quiet  bool
	Watch  bool
}

func NewCmdStatus(f *Factory, runF func(context.Context, *StatusOptions) error) *cobra.Command {
	opts := &StatusOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:               "status [VM]",
		ValidArgsFunction: completeArgs(f, false, vmArgs),
		Short:             "Show the VMs as a tree (HEAD marked with *), or one VM",
		Args:              usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			vm, err := vmArg(args)
			if err != nil {
				return err
			}
			opts.VM = vm
			if err := checkFormat(opts.Format); err != nil {
				return err
			}
			if err := opts.checkWatch(); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			if opts.Watch {
				return runWatch(cmd.Context(), opts)
			}
			return runStatus(cmd.Context(), opts)
		},
	}
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json")
	cmd.Flags().BoolVarP(&opts.Quiet, "quiet", "q", false, "print only VM ids")
	cmd.Flags().BoolVarP(&opts.Watch, "watch", "w", false, "redraw the tree at every change until Ctrl-C (with --format json: print each event)")
	return cmd
}

func checkFormat(f string) error {
	if f != "text" && f != "json" {
		return fmt.Errorf("--format %q: use text or json: %w", f, errUsage)
	}
	return nil
}

// StatusVM is one VM in `vers status --format json`.
type StatusVM struct {
	api.VM
	Head bool `json:"head"`
}

func runStatus(ctx context.Context, o *StatusOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	head := ""
	if p, err := o.f.Project(); err == nil {
		head, _ = p.Head()
	}
	var vms []api.VM
	if o.VM != "" {
		v, err := c.GetVM(ctx, o.VM)
		if err != nil {
			return err
		}
		vms = []api.VM{v}
	} else if vms, err = c.ListVMs(ctx); err != nil {
		return err
	}
	switch {
	case o.Format == "json":
		out := make([]StatusVM, len(vms))
		for i, v := range vms {
			out[i] = StatusVM{VM: v, Head: v.ID == head}
		}
		if o.VM != "" {
			return json.NewEncoder(o.f.Out).Encode(out[0])
		}
		return json.NewEncoder(o.f.Out).Encode(out)
	case o.Quiet:
		for _, v := range vms {
			fmt.Fprintln(o.f.Out, v.ID)
		}
		return nil
	}
	if len(vms) == 0 {
		fmt.Fprintln(o.f.Out, "No VMs. `vers run` boots one.")
		return nil
	}
	RenderTree(o.f.Out, vms, head)
	if head != "" && !containsID(vms, head) && o.VM == "" {
		fmt.Fprintf(o.f.Out, "\nHEAD names %s, which no longer exists.\n", head)
	}
	return nil
}

func containsID(vms []api.VM, id string) bool {
	for _, v := range vms {
		if v.ID == id {
			return true
		}
	}
	return false
}

// RenderTree prints VMs as a tree: roots first, children indented under
// their parent, HEAD marked with "*". Pure, so it is table-tested.
func RenderTree(w io.Writer, vms []api.VM, head string) {
	byID := map[string]bool{}
	kids := map[string][]api.VM{}
	for _, v := range vms {
		byID[v.ID] = true
	}
	var roots []api.VM
	for _, v := range vms {
		if v.ParentID == "" || !byID[v.ParentID] {
			roots = append(roots, v)
		} else {
			kids[v.ParentID] = append(kids[v.ParentID], v)
		}
	}
	order := func(s []api.VM) {
		sort.SliceStable(s, func(i, j int) bool { return s[i].CreatedAt.Before(s[j].CreatedAt) })
	}
	order(roots)
	// The origin column is there only when a VM came from a commit.
	origins := slices.ContainsFunc(vms, func(v api.VM) bool { return v.OriginCommit != "" })
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	if origins {
		fmt.Fprintln(tw, "  VM\tSTATE\tID\tORIGIN")
	} else {
		fmt.Fprintln(tw, "  VM\tSTATE\tID")
	}
	var walk func(v api.VM, prefix, branch string)
	walk = func(v api.VM, prefix, branch string) {
		mark := " "
		if v.ID == head {
			mark = "*"
		}
		name := v.Alias
		if name == "" {
			name = "(" + shortID(v.ID) + ")"
		}
		fmt.Fprintf(tw, "%s %s%s%s\t%s\t%s", mark, prefix, branch, name, v.State, v.ID)
		switch {
		case v.OriginCommit != "":
			fmt.Fprintf(tw, "\tfrom %s", shortCommit(v.OriginCommit))
		case origins:
			fmt.Fprint(tw, "\t-")
		}
		fmt.Fprintln(tw)
		children := kids[v.ID]
		order(children)
		next := prefix
		switch branch {
		case "├─ ":
			next += "│  "
		case "└─ ":
			next += "   "
		}
		for i, c := range children {
			b := "├─ "
			if i == len(children)-1 {
				b = "└─ "
			}
			walk(c, next, b)
		}
	}
	for _, r := range roots {
		walk(r, "", "")
	}
	tw.Flush()
	// Why a VM is not simply running: lost in a host restart, paused by a
	// full disk, ...
	for _, v := range vms {
		if v.StateReason != "" {
			name := v.Alias
			if name == "" {
				name = shortID(v.ID)
			}
			fmt.Fprintf(w, "%s is %s: %s\n", name, v.State, v.StateReason)
		}
	}
}

func shortID(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
