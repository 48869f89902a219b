package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"vers/api"
	"vers/client"
	"vers/internal/errdefs"
)

type ExecuteOptions struct {
	f       *Factory
	VM      string
	Command string
	Timeout time.Duration
	Env     []string
	Dir     string
	Stdin   bool
}

func NewCmdExecute(f *Factory, runF func(context.Context, *ExecuteOptions) error) *cobra.Command {
	opts := &ExecuteOptions{f: f}
	cmd := &cobra.Command{
		Use:     `execute [VM] "COMMAND"`,
		Aliases: []string{"exec"},
		Short:   "Run a command with bash in HEAD or VM; exits with its exit code",
		Long: `Run COMMAND with bash -c in the VM (HEAD when none is named). Its stdout and
stderr stream as they come, and vers exits with its exit code. More than one
word after VM is joined with spaces, so quoting the command is optional.`,
		Args: usageArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				opts.Command = args[0]
			} else {
				opts.VM, opts.Command = args[0], strings.Join(args[1:], " ")
			}
			if strings.TrimSpace(opts.Command) == "" {
				return fmt.Errorf("the command is empty: %w", errUsage)
			}
			if opts.Timeout < 0 {
				return fmt.Errorf("--timeout must not be negative: %w", errdefs.ErrInvalid)
			}
			if runF != nil {
				return runF(cmd.Context(), opts)
			}
			return runExecute(cmd.Context(), opts)
		},
	}
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 0, "kill the command after this long (e.g. 30s) and exit 6")
	cmd.Flags().StringArrayVarP(&opts.Env, "env", "e", nil, "set KEY=VALUE in the command's environment (repeatable)")
	cmd.Flags().StringVarP(&opts.Dir, "workdir", "w", "", "working directory in the VM (default /root)")
	cmd.Flags().BoolVarP(&opts.Stdin, "interactive", "i", false, "pass standard input to the command")
	return cmd
}

func runExecute(ctx context.Context, o *ExecuteOptions) error {
	ref, c, err := o.f.target(ctx, o.VM)
	if err != nil {
		return err
	}
	streams := client.ExecIO{Stdout: o.f.Out, Stderr: o.f.ErrOut}
	if o.Stdin {
		streams.Stdin = o.f.In
	}
	// Ctrl-C and friends go to the remote command, as they would locally.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	remote := make(chan int, 4)
	go func() {
		for s := range sigs {
			select {
			case remote <- int(s.(syscall.Signal)):
			default:
			}
		}
	}()
	streams.Signal = remote
	res, err := c.Exec(ctx, ref, api.ExecRequest{
		Command: o.Command, Env: o.Env, Dir: o.Dir, TimeoutMS: o.Timeout.Milliseconds(),
	}, streams)
	if err != nil {
		return headGone(ref, o.VM == "", err)
	}
	if res.TimedOut {
		return &ExitErr{Code: ExitTimeout, Err: fmt.Errorf("command timed out after %s and was killed", o.Timeout)}
	}
	if res.ExitCode != 0 {
		return &ExitErr{Code: res.ExitCode}
	}
	return nil
}
