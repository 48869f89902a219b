package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"vers/api"
	"vers/internal/project"
)

type RunOptions struct {
	f      *Factory
	Client clientFunc
	Alias  string
	MemMiB int
	VCPUs  int
	FsMiB  int
	Kernel string
	Rootfs string
	Format string
	Quiet  bool
	// Network overrides vers.toml's [network] mode: isolated or none.
	Network string
	// set marks the flags given on the command line, which override vers.toml.
	set map[string]bool
}

func NewCmdRun(f *Factory, runF func(context.Context, *RunOptions) error) *cobra.Command {
	opts := &RunOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:   "run [--vm-alias NAME]",
		Short: "Boot a VM from vers.toml and make it HEAD",
		Args:  usageArgs(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.set = map[string]bool{}
			cmd.Flags().Visit(func(fl *pflag.Flag) { opts.set[fl.Name] = true })
			if err := checkFormat(opts.Format); err != nil {
				return err
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runRun(cmd.Context(), opts)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&opts.Alias, "vm-alias", "", "name for the new VM (unique on this host)")
	fl.IntVar(&opts.MemMiB, "mem-size-mib", 0, "RAM in MiB (overrides vers.toml)")
	fl.IntVar(&opts.VCPUs, "vcpu-count", 0, "virtual CPUs (overrides vers.toml)")
	fl.IntVar(&opts.FsMiB, "fs-size-vm-mib", 0, "root filesystem size in MiB (overrides vers.toml)")
	fl.StringVar(&opts.Kernel, "kernel", "", "kernel image name (overrides vers.toml)")
	fl.StringVar(&opts.Rootfs, "rootfs", "", "root filesystem image name (overrides vers.toml)")
	fl.StringVar(&opts.Network, "network", "", "isolated (outbound connections only) or none (no network) (overrides vers.toml)")
	fl.StringVar(&opts.Format, "format", "text", "output format: text or json")
	fl.BoolVarP(&opts.Quiet, "quiet", "q", false, "print only the VM id")
	return cmd
}

func runRun(ctx context.Context, o *RunOptions) error {
	p, err := o.f.Project()
	if err != nil {
		return err
	}
	req := o.createRequest(p.Config)
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	start := time.Now()
	v, err := bootVM(ctx, c, p, req, progressOut(o.f, o.Format), func() {
		start = time.Now()
		if o.Format == "text" && !o.Quiet {
			fmt.Fprintf(o.f.ErrOut, "Booting VM (%d MiB, %d vCPU, %d MiB disk)...\n", req.MemMiB, req.VCPUs, req.FsMiB)
		}
	})
	if err != nil {
		return err
	}
	switch {
	case o.Format == "json":
		return json.NewEncoder(o.f.Out).Encode(v)
	case o.Quiet:
		fmt.Fprintln(o.f.Out, v.ID)
	default:
		printRunning(o.f.Out, v, time.Since(start), true)
	}
	return nil
}

// createRequest is the VM m (vers.toml) describes, with the flags given
// on the command line in place of its settings.
func (o *RunOptions) createRequest(m project.Config) api.CreateVMRequest {
	req := api.CreateVMRequest{
		Alias: o.Alias, MemMiB: m.Machine.MemMiB, VCPUs: m.Machine.VCPUs, FsMiB: m.Machine.FsMiB,
		Kernel: m.Kernel.Name, Rootfs: m.Rootfs.Name, Network: m.Network.Mode,
	}
	if o.set["mem-size-mib"] {
		req.MemMiB = o.MemMiB
	}
	if o.set["vcpu-count"] {
		req.VCPUs = o.VCPUs
	}
	if o.set["fs-size-vm-mib"] {
		req.FsMiB = o.FsMiB
	}
	if o.set["kernel"] {
		req.Kernel = o.Kernel
	}
	if o.set["rootfs"] {
		req.Rootfs = o.Rootfs
	}
	if o.set["network"] {
		req.Network = o.Network
	}
	return req
}

// bootVM is `vers run` without its printing: it checks req, builds the
// images it lacks (their progress to progress), boots the VM and makes it
// HEAD of p. booting, if not nil, is called just before the boot.
func bootVM(ctx context.Context, c Daemon, p *project.Project, req api.CreateVMRequest, progress io.Writer, booting func()) (api.VM, error) {
	// Refuse bad input before minutes of image building.
	if err := c.ValidateVM(ctx, req); err != nil {
		return api.VM{}, err
	}
	// Build missing images first, where their progress can be shown; the
	// create would only wait for them, silently.
	if err := ensureImages(ctx, c, progress, req.Kernel, req.Rootfs); err != nil {
		return api.VM{}, err
	}
	// What only a built image can tell (is the disk as large as the root
	// filesystem?) is checked again before a boot is announced.
	if err := c.ValidateVM(ctx, req); err != nil {
		return api.VM{}, err
	}
	if booting != nil {
		booting()
	}
	v, err := c.CreateVM(ctx, req)
	if err != nil {
		return api.VM{}, err
	}
	if err := moveHead(ctx, c, p, v.ID); err != nil {
		return v, fmt.Errorf("VM %s is running but HEAD could not be set: %w", v.ID, err)
	}
	return v, nil
}

// printRunning is what `vers run` and `vers run-commit` say of a new VM
// ready after ready; head says that HEAD moved to it.
func printRunning(w io.Writer, v api.VM, ready time.Duration, head bool) {
	fmt.Fprintf(w, "VM %s is running: id %s, alias %s (ready in %.1fs).", label(v), v.ID, aliasOrNone(v), ready.Seconds())
	if head {
		fmt.Fprintf(w, " HEAD -> %s", label(v))
	}
	fmt.Fprintln(w)
}
