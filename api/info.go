package api

import "time"

// VMInfo answers GET /v1/vms/{ref}/info: the VM and what it uses on the
// host now. Its VM fields are those of VM (id, alias, state, parent_id,
// origin_commit, created_at, ...), at the top level.
type VMInfo struct {
	VM
	// Children are the ids of the VMs branched from it that still exist.
	Children []string `json:"children"`
	// Accel is the accelerator its QEMU runs on: "kvm" or "tcg".
	Accel string `json:"accelerator"`
	// Network is its network mode: "isolated" or "none".
	Network string    `json:"network"`
	Memory  MemoryUse `json:"memory"`
	Disk    DiskUse   `json:"disk"`
	// LastPause is the last time a branch or commit of it stopped its
	// guest; absent when none did since versd started (it is kept in
	// versd's memory only).
	LastPause *PauseRecord `json:"last_pause,omitempty"`
	// Clock is how far the guest's clock is from the host's, asked of its
	// agent; absent when the VM does not run or its agent did not answer.
	Clock *ClockOffset `json:"clock,omitempty"`
	// LastBranch is the last branch of it since versd started (kept in
	// versd's memory only).
	LastBranch *BranchRecord `json:"last_branch,omitempty"`
}

// ClockOffset is a guest clock against the host's: OffsetMillis is the
// guest's reading minus the host's at the middle of the round trip that
// read it (positive: the guest is ahead), good to RTTMillis/2.
type ClockOffset struct {
	OffsetMillis float64 `json:"offset_ms"`
	RTTMillis    float64 `json:"rtt_ms"`
}

// MemoryUse is the host memory a VM uses.
type MemoryUse struct {
	// PSSBytes is its QEMU process's proportional set size (pages shared
	// with other processes, a branch's parent for one, counted in part); 0
	// when it has no process (sleeping, dead).
	PSSBytes int64 `json:"pss_bytes"`
	// RAMFile is the file its guest RAM lives in, when it is a file, and
	// RAMFileBytes the bytes allocated to it. RAMFileShared: the file is a
	// snapshot's, mapped privately, that other VMs may share.
	RAMFile       string `json:"ram_file,omitempty"`
	RAMFileBytes  int64  `json:"ram_file_bytes,omitempty"`
	RAMFileShared bool   `json:"ram_file_shared,omitempty"`
}

// DiskUse is the host disk a VM's own writes use.
type DiskUse struct {
	// Overlay is the file its disk writes go to, OverlayBytes the bytes
	// allocated to it, ChainLength the number of files in its disk chain
	// (the base image and every layer above it).
	Overlay      string `json:"overlay,omitempty"`
	OverlayBytes int64  `json:"overlay_bytes"`
	ChainLength  int    `json:"chain_length"`
}

// BranchRecord is one branch of a VM: how long its guest was stopped (0
// for a VM that was paused already) and how long after the branch began
// the first and the last child accepted commands.
type BranchRecord struct {
	Children         []string  `json:"children"`
	PauseMillis      float64   `json:"pause_ms"`
	FirstReadyMillis int64     `json:"first_ready_ms"`
	AllReadyMillis   int64     `json:"all_ready_ms"`
	At               time.Time `json:"at"`
}

// PauseRecord is one stop of a VM's guest by a branch or a commit.
type PauseRecord struct {
	Op          string    `json:"op"` // "branch" or "commit"
	PauseMillis float64   `json:"pause_ms"`
	At          time.Time `json:"at"`
}

// CLIError is what `vers` prints on stderr when a command given
// --format json fails: {"error":{"code":"not_found","message":"…"}}.
// Its codes are the API's, and CodeCancelled for a command a signal ended.
type CLIError struct {
	Error Error `json:"error"`
}

// CodeCancelled is the code of a CLIError for a command that a signal
// (Ctrl-C, SIGTERM, SIGHUP) ended; versd never answers it.
const CodeCancelled = "cancelled"

// Checkout is what `vers checkout --format json` prints: the VM HEAD
// names, absent when HEAD is not set.
type Checkout struct {
	Head *VM `json:"head"`
}

// CopyResult is what `vers cp --format json` prints.
type CopyResult struct {
	Src   string `json:"src"`
	Dst   string `json:"dst"`
	Bytes int64  `json:"bytes"`
}

// TreeResult is what a directory copy made: the directory (DST, or
// DST/basename(SRC) when DST was a directory already) and what it holds.
// PUT /v1/vms/{ref}/tree answers it; `vers cp -r` prints it in
// CopyTreeResult. Named pipes, sockets and devices are not copied: Skipped
// counts them, SkippedNames holds the first of them.
type TreeResult struct {
	Path         string   `json:"path"`
	Files        int      `json:"files"`
	Dirs         int      `json:"dirs"`
	Symlinks     int      `json:"symlinks"`
	Bytes        int64    `json:"bytes"`
	Skipped      int      `json:"skipped"`
	SkippedNames []string `json:"skipped_names,omitempty"`
}

// CopyTreeResult is what `vers cp -r --format json` prints.
type CopyTreeResult struct {
	Src string `json:"src"`
	Dst string `json:"dst"`
	TreeResult
	DurationMillis int64 `json:"duration_ms"`
}

// TunnelResult is what `vers tunnel --format json` prints once it listens.
type TunnelResult struct {
	// Local is the address it listens on, 127.0.0.1:Port.
	Local string `json:"local"`
	Port  int    `json:"port"`
	VMID  string `json:"vm_id"`
	Alias string `json:"alias,omitempty"`
	// RemoteHost and RemotePort are where the guest connects to, as the
	// guest reaches them (127.0.0.1: the guest's own loopback).
	RemoteHost string `json:"remote_host"`
	RemotePort int    `json:"remote_port"`
}

// ExportResult is what `vers commit export --format json` prints.
type ExportResult struct {
	Commit string `json:"commit"`
	Output string `json:"output"`
	Bytes  int64  `json:"bytes"`
}

// RemoveTagsResult is what `vers tag rm --format json` prints: the tags
// removed, as they were.
type RemoveTagsResult struct {
	Removed []Tag `json:"removed"`
}

// ExecResult is what `vers execute --format json` prints once the command
// has exited: its code, and its output, collected (as UTF-8 text: invalid
// bytes become U+FFFD).
type ExecResult struct {
	ExitCode       int    `json:"exit_code"`
	Stdout         string `json:"stdout"`
	Stderr         string `json:"stderr"`
	DurationMillis int64  `json:"duration_ms"`
}
