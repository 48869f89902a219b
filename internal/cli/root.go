// Package cli is the vers command line: one file per command, each with an
// options struct, a constructor that wires flags and a run function that
// takes the options. It talks to versd only through package client, and
// turns errors into exit codes in exactly one place (ExitCode).
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"vers/client"
	"vers/internal/config"
	"vers/internal/errdefs"
	"vers/internal/paths"
	"vers/internal/project"
)

// Exit codes, stable for scripts.
const (
	ExitOK        = 0
	ExitError     = 1
	ExitUsage     = 2
	ExitNotFound  = 3
	ExitConflict  = 4
	ExitInvalid   = 5
	ExitTimeout   = 6
	ExitCancelled = 7 // a signal (Ctrl-C, SIGTERM, SIGHUP) ended the command
	ExitNoSpace   = 8 // no space left, in the VM or on the host

	// ExitSession is what `vers execute` and `vers connect` exit with when
	// vers itself fails or ends the command (bad input, no such VM, the
	// --timeout, a signal): their other codes are the remote command's own,
	// so vers's codes 1-8 would be mistaken for it. As ssh does; the kind is
	// printed first on stderr ("vers: timeout: ...").
	ExitSession = 255
)

// errCancelled marks a command ended by a signal.
var errCancelled = errors.New("cancelled")

// ExitError carries a process exit code chosen by a command (for `vers
// execute`, the remote command's own code).
type ExitErr struct {
	Code int
	Err  error // nil when there is nothing more to print
}

func (e *ExitErr) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}
func (e *ExitErr) Unwrap() error { return e.Err }

// errUsage marks command-line mistakes.
var errUsage = errors.New("usage")

// ExitCode is the one place an error becomes an exit code.
func ExitCode(err error) int {
	var ee *ExitErr
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.Code
	case errors.Is(err, errUsage):
		return ExitUsage
	case errors.Is(err, errdefs.ErrNotFound):
		return ExitNotFound
	case errors.Is(err, errdefs.ErrConflict):
		return ExitConflict
	case errors.Is(err, errdefs.ErrInvalid):
		return ExitInvalid
	case errors.Is(err, errdefs.ErrTimeout), errors.Is(err, context.DeadlineExceeded):
		return ExitTimeout
	case errors.Is(err, errCancelled), errors.Is(err, context.Canceled):
		return ExitCancelled
	case errors.Is(err, errdefs.ErrNoSpace):
		return ExitNoSpace
	}
	return ExitError
}

// kindNames are the words `vers execute` and `vers connect` print before
// their own failures, one per exit code the other commands use.
var kindNames = map[int]string{
	ExitError: "error", ExitUsage: "usage", ExitNotFound: "not_found", ExitConflict: "conflict",
	ExitInvalid: "invalid", ExitTimeout: "timeout", ExitCancelled: "cancelled", ExitNoSpace: "no_space",
}

// sessionExit turns the outcome of a command that runs a remote process
// into its exit: the remote process's own code (an *ExitErr with no error)
// as it is, and any failure of vers's as ExitSession with the kind
// printed first.
func sessionExit(err error) error {
	var ee *ExitErr
	if err == nil || (errors.As(err, &ee) && ee.Err == nil) {
		return err
	}
	return &ExitErr{Code: ExitSession, Err: &sessionErr{code: ExitCode(err), err: unwrapUsage(err)}}
}

// Factory gives commands what they need, lazily, so flag parsing can be
// tested without a daemon.
type Factory struct {
	Layout paths.Layout
	// URL and Token are VERS_URL and VERS_TOKEN: a versd over TCP, used
	// instead of this host's socket, and never started by the CLI.
	URL, Token string
	// MCPToken is VERS_MCP_TOKEN, the token `vers mcp serve --http` asks.
	MCPToken string
	In       io.Reader
	Out      io.Writer
	ErrOut   io.Writer
	// WorkDir is where the project is searched from.
	WorkDir string

	client Daemon
}

// NewFactory is the factory of the real program.
func NewFactory() *Factory {
	wd, _ := os.Getwd()
	cfg := config.ForCLI(os.Getenv)
	return &Factory{Layout: cfg.Layout, URL: cfg.URL, Token: cfg.Token, MCPToken: cfg.MCPToken, In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr, WorkDir: wd}
}

// Client returns a client of a running versd, starting one on this host
// if needed; the versd of VERS_URL is never started, only asked.
func (f *Factory) Client(ctx context.Context) (Daemon, error) {
	if f.client != nil {
		return f.client, nil
	}
	if f.URL != "" {
		c, err := f.remote()
		if err != nil {
			return nil, err
		}
		f.client = c
		return c, nil
	}
	c, err := ensureDaemon(ctx, f.Layout, f.ErrOut)
	if err != nil {
		return nil, err
	}
	f.client = c
	return c, nil
}

// remote is the client of VERS_URL's versd. The token is VERS_TOKEN only:
// the CLI never sends the token file on its own, since whatever listens on
// that port (another user's process, when versd does not run) would get it.
func (f *Factory) remote() (*client.Client, error) {
	c, err := client.NewURL(f.URL, f.Token)
	if err != nil {
		return nil, fmt.Errorf("VERS_URL: %w", err)
	}
	return c, nil
}

// runningClient is a client of a versd that already runs, for what must
// never start one (shell completion): this host's socket, or VERS_URL's.
func (f *Factory) runningClient() (Daemon, error) {
	if f.client != nil {
		return f.client, nil
	}
	if f.URL != "" {
		return f.remote()
	}
	return client.New(f.Layout.Socket()), nil
}

// Project finds the project of the working directory.
func (f *Factory) Project() (*project.Project, error) {
	return project.Find(f.WorkDir)
}

// StdinIsTerminal reports whether standard input is an interactive terminal.
func (f *Factory) StdinIsTerminal() bool { return isTerminal(f.In) }

// StdoutIsTerminal reports whether standard output is a terminal.
func (f *Factory) StdoutIsTerminal() bool { return isTerminal(f.Out) }

func isTerminal(v any) bool {
	file, ok := v.(*os.File)
	return ok && term.IsTerminal(int(file.Fd()))
}

// NewRoot builds the vers command tree.
func NewRoot(f *Factory) *cobra.Command {
	root := &cobra.Command{
		Use:           "vers",
		Short:         "Run virtual machines and branch them while they run",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(f.In)
	root.SetOut(f.Out)
	root.SetErr(f.ErrOut)
	root.SetFlagErrorFunc(func(c *cobra.Command, err error) error {
		return fmt.Errorf("%v\nSee '%s --help'.: %w", err, c.CommandPath(), errUsage)
	})
	root.AddCommand(
		NewCmdInit(f, nil),
		NewCmdRun(f, nil),
		NewCmdExecute(f, nil),
		NewCmdConnect(f, nil),
		NewCmdStatus(f, nil),
		NewCmdInfo(f, nil),
		NewCmdCheckout(f, nil),
		NewCmdKill(f, nil),
		NewCmdImage(f),
		NewCmdCopy(f, nil),
		NewCmdTunnel(f, nil),
		NewCmdBranch(f, nil),
		NewCmdCommit(f, nil),
		NewCmdRunCommit(f, nil),
		NewCmdTag(f),
		NewCmdSleep(f, nil),
		NewCmdWake(f, nil),
		NewCmdRestore(f, nil),
		NewCmdPause(f, nil),
		NewCmdResume(f, nil),
		NewCmdCompare(f, nil),
		NewCmdDiff(f, nil),
		NewCmdPick(f, nil),
		NewCmdMCP(f),
		NewCmdUI(f, nil),
	)
	return root
}

// usageArgs wraps cobra's positional-argument checks so a wrong count is a usage error.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return fmt.Errorf("%v\nUsage: %s: %w", err, cmd.UseLine(), errUsage)
		}
		return nil
	}
}

// Main runs vers with args and returns the exit code.
func Main(ctx context.Context, f *Factory, args []string) int {
	root := NewRoot(f)
	root.SetArgs(args)
	ctx, stop := signalsFor(ctx, root, args)
	defer stop()
	cmd, err := root.ExecuteContextC(ctx)
	code := ExitCode(err)
	if err != nil {
		var ee *ExitErr
		if !errors.As(err, &ee) || ee.Err != nil {
			reportError(f.ErrOut, cmd, args, err)
		}
	}
	return code
}

// message is err's text for a user, without the kind it was wrapped with.
func message(err error) string {
	return strings.TrimSuffix(errdefs.Message(unwrapUsage(err)), ": "+errCancelled.Error())
}

// vmArg is the VM named by the optional first argument; an empty one is a
// mistake (it would name every VM's route), not "no VM".
func vmArg(args []string) (string, error) {
	if len(args) == 0 {
		return "", nil
	}
	if args[0] == "" {
		return "", fmt.Errorf("the VM is empty: give its alias, id or a unique id prefix, or leave it out for HEAD: %w", errUsage)
	}
	return args[0], nil
}

func unwrapUsage(err error) error {
	if errors.Is(err, errUsage) {
		return errors.New(trimSuffix(err.Error(), ": "+errUsage.Error()))
	}
	return err
}

func trimSuffix(s, suf string) string {
	if len(s) >= len(suf) && s[len(s)-len(suf):] == suf {
		return s[:len(s)-len(suf)]
	}
	return s
}
