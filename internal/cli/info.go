package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"vers/api"
)

type InfoOptions struct {
	f      *Factory
	Client clientFunc
	VM     string
	Format string
}

func NewCmdInfo(f *Factory, runF func(context.Context, *InfoOptions) error) *cobra.Command {
	opts := &InfoOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:   "info [VM]",
		Short: "Show HEAD or VM in detail: its origin, children, and the memory and disk it uses",
		Long: `Show the VM (HEAD when none is named): its state, parent and children, the
VM or commit it was started from, its accelerator and network, the memory
its QEMU uses (PSS, from /proc/PID/smaps_rollup) and its RAM file's
allocated bytes, the bytes its own disk layer has allocated and the length
of its disk chain, and the pause of its last branch or commit (versd keeps
that in memory only: none is shown after a daemon restart until the next).`,
		Args: usageArgs(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			vm, err := vmArg(args)
			if err != nil {
				return err
			}
			opts.VM = vm
			return dispatch(cmd, opts.Format, opts, runF, runInfo)
		},
	}
	cmd.Flags().StringVar(&opts.Format, "format", "text", "output format: text or json")
	return cmd
}

func runInfo(ctx context.Context, o *InfoOptions) error {
	ref, c, err := o.f.target(ctx, o.Client, o.VM)
	if err != nil {
		return err
	}
	info, err := c.VMInfo(ctx, ref)
	if err != nil {
		return headGone(ref, o.VM == "", err)
	}
	if o.Format == "json" {
		return json.NewEncoder(o.f.Out).Encode(info)
	}
	return renderInfo(o.f.Out, info, time.Now())
}

// renderInfo prints info as a block of "key: value" lines. Pure.
func renderInfo(w io.Writer, info api.VMInfo, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	row := func(k, format string, a ...any) { fmt.Fprintf(tw, "%s:\t"+format+"\n", append([]any{k}, a...)...) }
	row("ID", "%s", info.ID)
	row("Alias", "%s", orDash(info.Alias))
	if info.StateReason != "" {
		row("State", "%s (%s)", info.State, info.StateReason)
	} else {
		row("State", "%s", info.State)
	}
	row("Parent", "%s", orDash(info.ParentID))
	row("Children", "%s", orDash(strings.Join(info.Children, ", ")))
	row("Origin", "%s", origin(info.VM))
	row("Created", "%s (%s)", info.CreatedAt.Local().Format(time.DateTime), formatAge(now, info.CreatedAt))
	row("Machine", "%d vCPU, %d MiB RAM, %d MiB disk, %s", info.VCPUs, info.MemMiB, info.FsMiB, orDash(info.Accel))
	row("Network", "%s", orDash(info.Network))
	mem := formatBytes(info.Memory.PSSBytes) + " PSS"
	if info.Memory.PSSBytes == 0 {
		mem = "- (no process)"
	}
	if info.Memory.RAMFile != "" {
		shared := ""
		if info.Memory.RAMFileShared {
			shared = ", a snapshot's, shared"
		}
		mem += fmt.Sprintf("; RAM file %s allocated%s", formatBytes(info.Memory.RAMFileBytes), shared)
	}
	row("Memory", "%s", mem)
	if info.Disk.Overlay != "" {
		row("Disk", "%s allocated by its own layer; chain of %d file(s)", formatBytes(info.Disk.OverlayBytes), info.Disk.ChainLength)
	} else {
		row("Disk", "-")
	}
	if p := info.LastPause; p != nil {
		row("Last pause", "%.1f ms (%s, %s)", p.PauseMillis, p.Op, formatAge(now, p.At))
	} else {
		row("Last pause", "- (none since versd started)")
	}
	if c := info.Clock; c != nil {
		row("Guest clock", "%+.1f ms from the host's (read in %.1f ms)", c.OffsetMillis, c.RTTMillis)
	}
	if b := info.LastBranch; b != nil {
		kids := fmt.Sprintf("%d children", len(b.Children))
		if len(b.Children) == 1 {
			kids = "1 child"
		}
		row("Last branch", "%s, paused %.1f ms; first child ready in %d ms, all in %d ms (%s)",
			kids, b.PauseMillis, b.FirstReadyMillis, b.AllReadyMillis, formatAge(now, b.At))
	}
	return tw.Flush()
}

// origin says where a VM came from: a branch of a VM, a commit, or a boot.
func origin(v api.VM) string {
	switch {
	case v.OriginCommit != "" && v.ParentID != "":
		return fmt.Sprintf("branch of %s, from commit %s", v.ParentID, shortCommit(v.OriginCommit))
	case v.OriginCommit != "":
		return "commit " + shortCommit(v.OriginCommit)
	case v.ParentID != "":
		return "branch of " + v.ParentID
	}
	return "booted (vers run)"
}
