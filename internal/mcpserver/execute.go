package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"vers/api"
	"vers/internal/errdefs"
)

// Bounds of execute's arguments. A call never waits longer than
// maxTimeout, and a result never holds more than 2*maxOutput bytes of
// output: a result holds it twice (structured, and as JSON text for older
// clients), and escaped binary output grows sixfold, so that even then
// the result stays under the 16 MiB a message of the SDK's clients may be.
const (
	defaultTimeout = 10 * time.Minute
	maxTimeout     = time.Hour
	defaultOutput  = 64 << 10
	maxOutput      = 512 << 10
)

// ExecuteArgs are execute's.
type ExecuteArgs struct {
	VM             string   `json:"vm,omitempty" jsonschema:"the VM to run in: its alias, id or a unique id prefix (optional: HEAD when left out)"`
	Command        string   `json:"command" jsonschema:"the command, run with bash -c in /root unless workdir says otherwise"`
	Env            []string `json:"env,omitempty" jsonschema:"entries added to the command's environment, each written KEY=VALUE (optional)"`
	Workdir        string   `json:"workdir,omitempty" jsonschema:"working directory in the VM (optional, default /root)"`
	TimeoutSeconds int      `json:"timeout_seconds,omitempty" jsonschema:"kill the command after this many seconds (optional, default 600, at most 3600)"`
	MaxOutputBytes int      `json:"max_output_bytes,omitempty" jsonschema:"bytes of stdout and of stderr kept in the result (optional, default 65536, at most 524288)"`
	Resume         bool     `json:"resume,omitempty" jsonschema:"resume the VM first if it is paused (optional)"`
}

// ExecRequest is what Verbs.Execute runs: ExecuteArgs checked, with the
// timeout resolved.
type ExecRequest struct {
	VM      string
	Command string
	Env     []string
	Dir     string
	Timeout time.Duration
	Resume  bool
}

// ExecuteResult is a command that exited.
type ExecuteResult struct {
	VMID     string `json:"vm_id" jsonschema:"the id of the VM the command ran in"`
	ExitCode int    `json:"exit_code" jsonschema:"the command's exit status"`
	Signaled string `json:"signaled,omitempty" jsonschema:"the signal that ended the command, if one did"`
	Stdout   string `json:"stdout"`
	Stderr   string `json:"stderr"`
	// DurationMillis runs from the call to the command's exit.
	DurationMillis int64  `json:"duration_ms"`
	StdoutDropped  int64  `json:"stdout_dropped_bytes,omitempty" jsonschema:"bytes cut from the middle of stdout, when it was longer than max_output_bytes"`
	StderrDropped  int64  `json:"stderr_dropped_bytes,omitempty" jsonschema:"bytes cut from the middle of stderr, when it was longer than max_output_bytes"`
	Note           string `json:"note,omitempty" jsonschema:"what was cut from the output, when anything was"`
}

func (t *tools) execute(ctx context.Context, a ExecuteArgs) (ExecuteResult, error) {
	req, limit, err := a.check()
	if err != nil {
		return ExecuteResult{}, err
	}
	stdout, stderr := newCapped(limit), newCapped(limit)
	start := time.Now()
	id, exit, err := t.v.Execute(ctx, req, stdout, stderr)
	res := ExecuteResult{
		VMID: id, ExitCode: exit.ExitCode, Signaled: exit.Signaled,
		Stdout: stdout.String(), Stderr: stderr.String(), DurationMillis: time.Since(start).Milliseconds(),
		StdoutDropped: stdout.dropped, StderrDropped: stderr.dropped,
	}
	res.Note = truncationNote(res, limit)
	if err != nil {
		// What a command gave before its timeout is often what says why.
		if errors.Is(err, errdefs.ErrTimeout) {
			return ExecuteResult{}, &toolError{err: err, extra: outputSoFar(res)}
		}
		return ExecuteResult{}, err
	}
	return res, nil
}

// check resolves a's defaults and refuses what is out of bounds.
func (a ExecuteArgs) check() (ExecRequest, int, error) {
	req := ExecRequest{VM: a.VM, Command: a.Command, Env: a.Env, Dir: a.Workdir, Timeout: defaultTimeout, Resume: a.Resume}
	switch {
	case strings.TrimSpace(a.Command) == "":
		return req, 0, invalid("command is empty: give a shell command, such as \"ls -la\"")
	case a.TimeoutSeconds < 0 || time.Duration(a.TimeoutSeconds)*time.Second > maxTimeout:
		return req, 0, invalid("timeout_seconds %d: give 1 to %d (or leave it out for %d)", a.TimeoutSeconds, int(maxTimeout.Seconds()), int(defaultTimeout.Seconds()))
	case a.MaxOutputBytes < 0 || a.MaxOutputBytes > maxOutput:
		return req, 0, invalid("max_output_bytes %d: give 1 to %d (or leave it out for %d)", a.MaxOutputBytes, maxOutput, defaultOutput)
	}
	if err := api.CheckEnv(a.Env); err != nil {
		return req, 0, invalid("env: %v", err)
	}
	if a.TimeoutSeconds > 0 {
		req.Timeout = time.Duration(a.TimeoutSeconds) * time.Second
	}
	limit := defaultOutput
	if a.MaxOutputBytes > 0 {
		limit = a.MaxOutputBytes
	}
	return req, limit, nil
}

// truncationNote says what was cut from res's output, if anything was.
func truncationNote(res ExecuteResult, limit int) string {
	var cut []string
	for _, s := range []struct {
		name    string
		dropped int64
	}{{"stdout", res.StdoutDropped}, {"stderr", res.StderrDropped}} {
		if s.dropped > 0 {
			cut = append(cut, fmt.Sprintf("%s: %d bytes dropped from the middle, first and last %d kept", s.name, s.dropped, limit/2))
		}
	}
	if len(cut) == 0 {
		return ""
	}
	return "output truncated (" + strings.Join(cut, "; ") + fmt.Sprintf("); raise max_output_bytes (at most %d), or write the output to a file in the VM and read it in parts", maxOutput)
}

// outputSoFar is res's output as the content of an error result.
func outputSoFar(res ExecuteResult) []mcp.Content {
	var c []mcp.Content
	if res.Stdout != "" {
		c = append(c, &mcp.TextContent{Text: "stdout so far:\n" + res.Stdout})
	}
	if res.Stderr != "" {
		c = append(c, &mcp.TextContent{Text: "stderr so far:\n" + res.Stderr})
	}
	if res.Note != "" {
		c = append(c, &mcp.TextContent{Text: res.Note})
	}
	return c
}

// capped keeps the first and the last limit/2 bytes written to it, and
// counts the bytes between, which it drops.
type capped struct {
	head, tail []byte
	half       int
	dropped    int64
}

func newCapped(limit int) *capped {
	return &capped{half: max(limit/2, 1)}
}

func (c *capped) Write(p []byte) (int, error) {
	n := len(p)
	if room := c.half - len(c.head); room > 0 {
		k := min(room, len(p))
		c.head = append(c.head, p[:k]...)
		p = p[k:]
	}
	c.tail = append(c.tail, p...)
	if over := len(c.tail) - c.half; over > 0 {
		c.dropped += int64(over)
		c.tail = append(c.tail[:0], c.tail[over:]...)
	}
	return n, nil
}

// String is what was kept, with a marker where bytes were dropped.
func (c *capped) String() string {
	if c.dropped == 0 {
		return string(c.head) + string(c.tail)
	}
	return fmt.Sprintf("%s\n[... %d bytes dropped ...]\n%s", c.head, c.dropped, c.tail)
}
