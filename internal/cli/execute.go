package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"vers/api"
	"vers/client"
	"vers/internal/errdefs"
)

// timeoutGrace is how long after --timeout the CLI gives up by itself when
// the guest has not reported the kill (a stopped VM, a lost agent).
const timeoutGrace = time.Second

type ExecuteOptions struct {
	f      *Factory
	Client clientFunc
	// Signals delivers the signals that end or interrupt the command; stop
	// ends the delivery. Tests give their own channel.
	Signals func() (sigs <-chan os.Signal, stop func())

	// Words are the arguments after vers's leading flags; Dashed says they
	// came after "--", so that they are all the command.
	Words  []string
	Dashed bool
	flags  *pflag.FlagSet // vers's flags, parsed again after a VM's name
	help   bool

	// Resolved from Words by resolve.
	VM      string
	Command string

	Timeout time.Duration
	Env     []string
	Dir     string
	Stdin   bool
	// Resume resumes a paused VM first.
	Resume bool
	// Format json: the command's output is collected and printed as one
	// api.ExecResult when it ends.
	Format string

	// Fan names the VMs of a fan-out (--on, --children, --tree): the
	// command runs in all of them at once and one table reports them.
	Fan fanSpec
	// Output is the fan-out table's output column: "short" (first line)
	// or "full" (every distinct output after the table).
	Output    string
	MaxOutput int64
}

func NewCmdExecute(f *Factory, runF func(context.Context, *ExecuteOptions) error) *cobra.Command {
	opts := &ExecuteOptions{f: f, Client: f.Client, Signals: notifySignals}
	cmd := &cobra.Command{
		Use:     `execute [VM] [--] COMMAND...`,
		Aliases: []string{"exec"},
		Short:   "Run a command with bash in HEAD or VM; exits with its exit code",
		Long: `Run COMMAND with bash -c in the VM (HEAD when none is named). Its stdout and
stderr stream as they come, and vers exits with its exit code. More than one
word of COMMAND is joined with spaces, so quoting it is optional.

The first word names a VM only when a VM has that alias, id or id prefix, or
when "--" follows it; otherwise it begins the command, which runs in HEAD:
  vers execute ls -la                 ls -la in HEAD
  vers execute db-root ls -la         ls -la in VM db-root
  vers execute -- db-root             the command "db-root" in HEAD
  vers execute db-root -- ls -la      VM db-root, whatever follows
vers's flags come before the command: before VM, after it, or both
(vers execute db-root --timeout 5s 'make test'); everything from the
command's first word on is the command's, flags included.

Exit codes: the command's own. When vers itself fails or ends the command
(no such VM, bad input, --timeout, a signal) it exits 255 and stderr starts
with the kind: "vers: not_found: ...", "vers: timeout: ...". Ctrl-C is passed
to the command once; a second one, SIGTERM or SIGHUP make vers stop the
command and exit.`,
		DisableFlagParsing: true, // vers's flags may follow VM: see parse
		RunE: func(cmd *cobra.Command, args []string) error {
			err := opts.parseLeading(args)
			if opts.help {
				return cmd.Help()
			}
			if err == nil {
				if runF != nil {
					err = runF(cmd.Context(), opts)
				} else {
					err = runExecute(cmd.Context(), opts)
				}
			}
			if opts.help {
				return cmd.Help()
			}
			return sessionExit(err)
		},
	}
	fl := cmd.Flags()
	fl.SetInterspersed(false)
	fl.DurationVar(&opts.Timeout, "timeout", 0, "kill the command after this long (e.g. 30s; at least 1ms, rounded up to whole ms)")
	fl.StringArrayVarP(&opts.Env, "env", "e", nil, "set KEY=VALUE in the command's environment (repeatable)")
	fl.StringVarP(&opts.Dir, "workdir", "w", "", "working directory in the VM (default /root)")
	fl.BoolVarP(&opts.Stdin, "interactive", "i", false, "pass standard input to the command")
	fl.BoolVar(&opts.Resume, "resume", false, "resume the VM first if it is paused (`vers pause`)")
	fl.StringVar(&opts.Format, "format", "text", "output format: text (streamed) or json (one object when the command ends)")
	fl.StringSliceVar(&opts.Fan.On, "on", nil, "run in each of these VMs at once (A,B,C; repeatable) and print a table")
	fl.StringVar(&opts.Fan.Children, "children", "", "run in each child of VM at once and print a table")
	fl.StringVar(&opts.Fan.Tree, "tree", "", "run in VM and each of its descendants at once and print a table")
	fl.StringVar(&opts.Output, "output", "short", "fan-out table: short (first line of output) or full (every distinct output, once)")
	fl.Int64Var(&opts.MaxOutput, "max-output", defaultMaxOutput, "fan-out: bytes of each stream kept per VM (the rest is counted, not kept)")
	fl.BoolVarP(&opts.help, "help", "h", false, "help for execute")
	opts.flags = fl
	cmd.ValidArgsFunction = completeLeading(f, fl)
	return cmd
}

func notifySignals() (<-chan os.Signal, func()) {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	return sigs, func() { signal.Stop(sigs) }
}

// parseLeading parses vers's flags before the first other word.
func (o *ExecuteOptions) parseLeading(args []string) error {
	if err := o.flags.Parse(args); err != nil {
		return fmt.Errorf("%v\nSee 'vers execute --help': %w", err, errUsage)
	}
	o.Words = o.flags.Args()
	o.Dashed = o.flags.ArgsLenAtDash() == 0
	return o.validate()
}

// resolve decides whether the first word names a VM (see the command's
// help), parses vers's flags after it, and sets VM and Command. isVM asks
// the daemon; it is called only when the words leave the question open.
func (o *ExecuteOptions) resolve(isVM func(string) (bool, error)) error {
	words := o.Words
	if !o.Dashed && !o.Fan.set() && len(words) >= 2 && words[0] != "" {
		named := words[1] == "--"
		if !named {
			var err error
			if named, err = isVM(words[0]); err != nil {
				return err
			}
		}
		if named {
			o.VM = words[0]
			if err := o.flags.Parse(words[1:]); err != nil {
				return fmt.Errorf("%v\nSee 'vers execute --help': %w", err, errUsage)
			}
			if o.help {
				return nil
			}
			words = o.flags.Args()
		}
	}
	o.Command = strings.Join(words, " ")
	if strings.TrimSpace(o.Command) == "" {
		if o.VM != "" {
			return fmt.Errorf("no command for VM %s; usage: vers execute [VM] [--] COMMAND...: %w", o.VM, errUsage)
		}
		return fmt.Errorf("give a command; usage: vers execute [VM] [--] COMMAND...: %w", errUsage)
	}
	return o.validate()
}

func (o *ExecuteOptions) validate() error {
	if err := checkFormat(o.Format); err != nil {
		return err
	}
	if err := o.Fan.check(); err != nil {
		return err
	}
	switch {
	case o.Output != "short" && o.Output != "full":
		return fmt.Errorf("--output is short or full, not %q: %w", o.Output, errUsage)
	case o.Fan.set() && o.Stdin:
		return fmt.Errorf("-i passes standard input to one command; it cannot go to several VMs at once: %w", errUsage)
	case o.MaxOutput <= 0:
		return fmt.Errorf("--max-output must be positive: %w", errUsage)
	}
	switch {
	case o.Timeout < 0:
		return fmt.Errorf("--timeout must not be negative: %w", errdefs.ErrInvalid)
	case o.Timeout > 0 && o.Timeout < time.Millisecond:
		// The API counts whole milliseconds, where 0 means no timeout.
		return fmt.Errorf("--timeout %s is less than a millisecond; give at least 1ms (0 or no flag: no timeout): %w", o.Timeout, errdefs.ErrInvalid)
	}
	// The entries are checked as versd checks them.
	if err := api.CheckEnv(o.Env); err != nil {
		return fmt.Errorf("%w: %w", err, errdefs.ErrInvalid)
	}
	return nil
}

// timeoutMillis is d in whole milliseconds, rounded up, so 1.5ms is 2ms and
// never 0 (which would mean no timeout).
func timeoutMillis(d time.Duration) int64 {
	return int64((d + time.Millisecond - 1) / time.Millisecond)
}

// target resolves the words into the VM and the command, and returns the
// VM to run in (resumed first with --resume); "" for --help.
func (o *ExecuteOptions) target(ctx context.Context, c Daemon) (string, error) {
	err := o.resolve(func(word string) (bool, error) {
		_, err := c.GetVM(ctx, word)
		if errors.Is(err, errdefs.ErrNotFound) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil || o.help {
		return "", err
	}
	ref, err := o.f.headRef(o.VM)
	if err != nil {
		if o.VM == "" && len(o.Words) > 1 && !o.Dashed {
			return "", fmt.Errorf("no VM is named %q, so the whole line is the command, for HEAD; but %w", o.Words[0], err)
		}
		return "", err
	}
	if o.Resume {
		if err := resumeFirst(ctx, c, ref); err != nil {
			return "", headGone(ref, o.VM == "", err)
		}
	}
	return ref, nil
}

func runExecute(ctx context.Context, o *ExecuteOptions) error {
	c, err := o.Client(ctx)
	if err != nil {
		return err
	}
	if o.Fan.set() {
		return o.runFanout(ctx, c)
	}
	ref, err := o.target(ctx, c)
	if err != nil || o.help {
		return err
	}

	// The first Ctrl-C goes to the remote command, as it would locally; a
	// second one, SIGTERM or SIGHUP end vers. Ending ctx closes the exec
	// WebSocket, and the daemon kills the command when it closes.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sigs, stopSignals := o.Signals()
	defer stopSignals()
	remote := make(chan int, 1)
	go func() {
		interrupted := false
		for {
			select {
			case <-ctx.Done():
				return
			case s := <-sigs:
				if s == os.Interrupt && !interrupted {
					interrupted = true
					remote <- int(syscall.SIGINT)
					continue
				}
				cancel(fmt.Errorf("ended by %v; the command is being killed: %w", s, errCancelled))
				return
			}
		}
	}()
	streams := client.ExecIO{Stdout: o.f.Out, Stderr: o.f.ErrOut, Signal: remote}
	var stdout, stderr bytes.Buffer
	if o.Format == "json" {
		streams.Stdout, streams.Stderr = &stdout, &stderr
	}
	if o.Stdin {
		streams.Stdin = o.f.In
	}
	start := time.Now()
	res, err := execIn(ctx, c, ref, o.VM == "", api.ExecRequest{Command: o.Command, Env: o.Env, Dir: o.Dir}, o.Timeout, streams)
	if err != nil {
		return err
	}
	if o.Format == "json" {
		if err := o.printResult(res.ExitCode, &stdout, &stderr, time.Since(start)); err != nil {
			return err
		}
	}
	if res.ExitCode != 0 {
		return &ExitErr{Code: res.ExitCode}
	}
	return nil
}

// execIn runs req in VM ref, killed after timeout (0: none), and returns
// its exit once all its output is written to streams. Ending ctx ends the
// command: the exec WebSocket closes, and versd kills the command then.
// fromHead says ref is HEAD's, for the message when it is gone. A command
// that timed out is an error of kind timeout, whatever its exit.
func execIn(ctx context.Context, c Daemon, ref string, fromHead bool, req api.ExecRequest, timeout time.Duration, streams client.ExecIO) (api.ExecControl, error) {
	// The CLI keeps its own deadline: a guest that never reports the kill
	// (a stopped VM, a lost agent) must not keep vers waiting.
	if timeout > 0 {
		req.TimeoutMS = timeoutMillis(timeout)
	}
	ctx, cancel := execDeadline(ctx, timeout)
	defer cancel(nil)
	res, err := c.Exec(ctx, ref, req, streams)
	if err != nil {
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
			return res, cause
		}
		return res, headGone(ref, fromHead, pausedHint(ctx, c, ref, err))
	}
	if res.TimedOut {
		return res, fmt.Errorf("command timed out after %s and was killed: %w", timeout, errdefs.ErrTimeout)
	}
	return res, nil
}

// printResult is execute's --format json: one object once the command
// has exited, its output collected.
func (o *ExecuteOptions) printResult(code int, stdout, stderr *bytes.Buffer, took time.Duration) error {
	return json.NewEncoder(o.f.Out).Encode(api.ExecResult{ExitCode: code,
		Stdout: stdout.String(), Stderr: stderr.String(), DurationMillis: took.Milliseconds()})
}
