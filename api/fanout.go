package api

// FanoutResult is what `vers execute --on/--children/--tree --format json`
// and `vers compare --format json` print: one row per VM, in the order the
// VMs were named (a tree in depth-first order), the rows grouped by
// identical result, and the exit code vers exits with.
type FanoutResult struct {
	Command string        `json:"command"`
	Results []FanoutRow   `json:"results"`
	Groups  []FanoutGroup `json:"groups"`
	// ExitCode is the highest of the rows' codes (what `vers execute`
	// exits with); a row whose command did not run counts as 255, as
	// `vers execute` exits when vers fails. `vers compare` exits 0 when
	// there is one group and 1 when there are more.
	ExitCode int `json:"exit_code"`
}

// FanoutRow is the command's outcome in one VM. Error is set when vers could
// not run it there (the VM is dead, paused or its agent is gone); the
// command's own failures are in ExitCode.
type FanoutRow struct {
	VM             VMRef  `json:"vm"`
	ExitCode       int    `json:"exit_code"`
	Stdout         string `json:"stdout"`
	Stderr         string `json:"stderr"`
	DurationMillis int64  `json:"duration_ms"`
	TimedOut       bool   `json:"timed_out,omitempty"`
	// DroppedBytes counts output beyond the cap each stream is kept to
	// (--max-output); the text above ends where the cap was reached.
	DroppedBytes int64  `json:"dropped_bytes,omitempty"`
	Error        *Error `json:"error,omitempty"`
	// Group is the 1-based index into FanoutResult.Groups of the rows with
	// exactly this result.
	Group int `json:"group"`
}

// FanoutGroup is a set of VMs whose results are identical: the same exit
// code, stdout and stderr (or the same error).
type FanoutGroup struct {
	VMs      []VMRef `json:"vms"`
	ExitCode int     `json:"exit_code"`
}

// VMRef names a VM in a result. Commit is set on a side of a diff that
// named a commit: the VM was started from it for the diff, then killed.
type VMRef struct {
	ID     string `json:"id"`
	Alias  string `json:"alias,omitempty"`
	Commit string `json:"commit,omitempty"`
}

// ExecDiff is what `vers diff A B --exec CMD --format json` prints: both
// results and unified diffs of their outputs (empty when equal).
type ExecDiff struct {
	Command    string    `json:"command"`
	A          FanoutRow `json:"a"`
	B          FanoutRow `json:"b"`
	Same       bool      `json:"same"`
	StdoutDiff string    `json:"stdout_diff,omitempty"`
	StderrDiff string    `json:"stderr_diff,omitempty"`
}

// FanoutRequest is the body of POST /v1/fanout: run Command (with bash -c)
// in the VMs named by exactly one of On, Children (a VM's children) and
// Tree (a VM and all its descendants), at once, as `vers execute --tree`
// does, and answer one FanoutResult. TimeoutMS bounds the command in each
// VM (default DefaultFanoutTimeoutMS, at most MaxFanoutTimeoutMS);
// MaxOutput the bytes of each stream kept per VM (default 1 MiB).
type FanoutRequest struct {
	Command   string   `json:"command"`
	On        []string `json:"on,omitempty"`
	Children  string   `json:"children,omitempty"`
	Tree      string   `json:"tree,omitempty"`
	Env       []string `json:"env,omitempty"`
	Dir       string   `json:"dir,omitempty"`
	TimeoutMS int64    `json:"timeout_ms,omitempty"`
	MaxOutput int64    `json:"max_output,omitempty"`
}

// Limits of a FanoutRequest.
const (
	DefaultFanoutTimeoutMS = 60_000
	MaxFanoutTimeoutMS     = 3_600_000
	MaxFanoutOutput        = 16 << 20
	MaxFanoutVMs           = 256
)
