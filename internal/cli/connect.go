package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"vers/api"
	"vers/client"
)

type ConnectOptions struct {
	f      *Factory
	Client clientFunc
	VM     string
	// Resume resumes a paused VM first.
	Resume bool
}

func NewCmdConnect(f *Factory, runF func(context.Context, *ConnectOptions) error) *cobra.Command {
	opts := &ConnectOptions{f: f, Client: f.Client}
	cmd := &cobra.Command{
		Use:               "connect [VM]",
		ValidArgsFunction: completeArgs(f, false, vmArgs),
		Short:             "Open a login shell in HEAD or VM",
		Long: `Open an interactive login shell in the VM (HEAD when none is named). On a
terminal it is a full PTY session: type exit (or Ctrl-D) to return. When
standard input is not a terminal, the shell runs what standard input gives,
so a script can be piped or passed as a here-document.

Exit codes: the shell's own. When vers itself fails (no such VM, the session
lost, a paused VM without --resume) it exits 255 and stderr starts with the
kind ("vers: not_found: ...").`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 1 {
				return sessionExit(fmt.Errorf("connect takes at most one VM; to run a command use vers execute: %w", errUsage))
			}
			vm, err := vmArg(args)
			if err != nil {
				return sessionExit(err)
			}
			opts.VM = vm
			if runF != nil {
				return sessionExit(runF(cmd.Context(), opts))
			}
			return sessionExit(runConnect(cmd.Context(), opts))
		},
	}
	cmd.Flags().BoolVar(&opts.Resume, "resume", false, "resume the VM first if it is paused (`vers pause`)")
	return cmd
}

func runConnect(ctx context.Context, o *ConnectOptions) error {
	ref, c, err := o.f.target(ctx, o.Client, o.VM)
	if err != nil {
		return err
	}
	if o.Resume {
		if err := resumeFirst(ctx, c, ref); err != nil {
			return headGone(ref, o.VM == "", err)
		}
	}
	if !o.f.StdinIsTerminal() {
		// A script on stdin: a non-interactive login shell reads it.
		res, err := c.Exec(ctx, ref, api.ExecRequest{Argv: []string{"bash", "-l"}},
			client.ExecIO{Stdin: o.f.In, Stdout: o.f.Out, Stderr: o.f.ErrOut})
		if err != nil {
			return headGone(ref, o.VM == "", pausedHint(ctx, c, ref, err))
		}
		if res.ExitCode != 0 {
			return &ExitErr{Code: res.ExitCode}
		}
		return nil
	}
	return interactive(ctx, o, c, ref)
}

// interactive runs a PTY session with the local terminal in raw mode. The
// terminal is restored on every way out: normal exit, error, or a signal.
func interactive(ctx context.Context, o *ConnectOptions, c Daemon, ref string) error {
	in := o.f.In.(*os.File)
	fd := int(in.Fd())
	cols, rows, err := term.GetSize(fd)
	if err != nil {
		cols, rows = 80, 24
	}
	termName := os.Getenv("TERM")
	if termName == "" {
		termName = "xterm-256color"
	}
	old, err := term.MakeRaw(fd)
	if err != nil {
		return fmt.Errorf("put the terminal in raw mode: %w", err)
	}
	restore := func() { term.Restore(fd, old) }
	defer restore()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resize := make(chan client.WinSize, 1)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	// Signals that would kill vers must not leave the terminal raw.
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(term)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-winch:
				if w, h, err := termGetSize(fd); err == nil {
					select {
					case resize <- client.WinSize{Rows: uint16(h), Cols: uint16(w)}:
					default:
					}
				}
			case <-term:
				cancel()
				return
			}
		}
	}()
	res, err := c.Exec(ctx, ref, api.ExecRequest{TTY: true, Rows: uint16(rows), Cols: uint16(cols), Term: termName},
		client.ExecIO{Stdin: in, Stdout: o.f.Out, Resize: resize})
	restore()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("session ended by a signal: %w", errCancelled)
		}
		return headGone(ref, o.VM == "", pausedHint(ctx, c, ref, err))
	}
	if res.ExitCode != 0 {
		return &ExitErr{Code: res.ExitCode}
	}
	return nil
}

var termGetSize = term.GetSize
