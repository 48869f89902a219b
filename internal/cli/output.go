package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"vers/api"
	"vers/internal/errdefs"
)

// reportError prints the error a command ended with: "vers: message" on
// stderr, or with --format json the object api.CLIError, so that a script
// reads the same classification the exit code gives.
func reportError(w io.Writer, cmd *cobra.Command, args []string, err error) {
	if !wantsJSON(cmd, args) {
		fmt.Fprintln(w, "vers:", message(err))
		return
	}
	code := errorCode(err)
	var se *sessionErr
	if errors.As(err, &se) {
		err = se.err // its kind is the code
	}
	json.NewEncoder(w).Encode(api.CLIError{Error: api.Error{Code: code, Message: message(err)}})
}

// sessionErr is a failure of vers's own in execute or connect, whose exit
// code (ExitSession) cannot say what it was: its text starts with the kind,
// "not_found: ...". code is the exit code another command would give.
type sessionErr struct {
	code int
	err  error
}

func (e *sessionErr) Error() string { return kindNames[e.code] + ": " + e.err.Error() }
func (e *sessionErr) Unwrap() error { return e.err }

// wantsJSON reports whether the command line asked for --format json: the
// parsed flag when parsing got that far, the words of the command line
// otherwise (a usage error before the flag was read), but for execute and
// connect, whose command's words may say anything.
func wantsJSON(cmd *cobra.Command, args []string) bool {
	if cmd != nil {
		fl := cmd.Flags().Lookup("format")
		if fl != nil && fl.Changed {
			return fl.Value.String() == "json"
		}
		// The words of execute's command are the command's, not vers's.
		if name := cmd.Name(); name == "execute" || name == "connect" {
			return false
		}
	}
	for i, a := range args {
		switch {
		case a == "--":
			return false
		case a == "--format=json", a == "--format" && i+1 < len(args) && args[i+1] == "json":
			return true
		}
	}
	return false
}

// errorCode is the API code of the error a command ended with: the same
// classification as its exit code (ExitCode); usage mistakes are invalid.
func errorCode(err error) string {
	code := ExitCode(err)
	if se := (*sessionErr)(nil); errors.As(err, &se) {
		code = se.code
	}
	switch code {
	case ExitUsage, ExitInvalid:
		return api.CodeInvalid
	case ExitNotFound:
		return api.CodeNotFound
	case ExitConflict:
		return api.CodeConflict
	case ExitTimeout:
		return api.CodeTimeout
	case ExitCancelled:
		return api.CodeCancelled
	case ExitNoSpace:
		return api.CodeNoSpace
	}
	return errdefs.Code(err) // internal, or unavailable
}

// signalsFor ends ctx on Ctrl-C, SIGTERM or SIGHUP for every command but
// execute and connect, which pass signals to the remote command and
// handle them themselves: a command a signal ends exits ExitCancelled.
func signalsFor(ctx context.Context, root *cobra.Command, args []string) (context.Context, context.CancelFunc) {
	if c, _, err := root.Find(args); err == nil {
		if name := c.Name(); name == "execute" || name == "connect" {
			return ctx, func() {}
		}
	}
	return withSignals(ctx)
}

// progressOut is where a command shows progress: stderr, except with
// --format json, where stderr holds only an error object.
func progressOut(f *Factory, format string) io.Writer {
	if format == "json" {
		return io.Discard
	}
	return f.ErrOut
}
