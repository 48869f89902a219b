package api

import "time"

// FSDiffRequest is the body of POST /v1/diff: compare the filesystems of
// two running VMs (or commits: each is started for the diff) under Paths (default /), leaving out Exclude (default the
// kernel's pseudo filesystems and volatile places: DefaultDiffExclude)
// except what Include names. Checksum hashes every file's content instead
// of trusting unchanged metadata (slow: it reads everything).
type FSDiffRequest struct {
	A        string   `json:"a"`
	B        string   `json:"b"`
	Paths    []string `json:"paths,omitempty"`
	Exclude  []string `json:"exclude,omitempty"`
	Include  []string `json:"include,omitempty"`
	Checksum bool     `json:"checksum,omitempty"`
	// Content asks for a unified diff of each changed text file, of up to
	// ContentMax bytes of each side (default DefaultContentMax).
	Content    bool  `json:"content,omitempty"`
	ContentMax int64 `json:"content_max,omitempty"`
}

// DefaultContentMax is how much of each file a content diff compares.
const DefaultContentMax = 256 << 10

// DefaultDiffExclude is what a diff leaves out unless told otherwise.
var DefaultDiffExclude = []string{"/proc", "/sys", "/dev", "/run", "/tmp"}

// FSDiff is what differs between the filesystems of VMs A and B.
type FSDiff struct {
	A       VMRef      `json:"a"`
	B       VMRef      `json:"b"`
	Paths   []string   `json:"paths"`
	Exclude []string   `json:"exclude"`
	Changes []FSChange `json:"changes"`
	// Expected are differences vers itself makes between VMs (a file it
	// writes per VM); they are listed apart and do not count as changes.
	Expected []FSChange `json:"expected,omitempty"`
	Stat     FSDiffStat `json:"stat"`
	// Errors are entries that could not be read on one side or the other.
	Errors         []string `json:"errors,omitempty"`
	DurationMillis int64    `json:"duration_ms"`
	// Method is how the trees were compared: DiffJournal (only what the
	// guests' change journals say either changed since they parted) or
	// DiffWalk (both trees whole: no common past, or --checksum).
	Method string `json:"method"`
	// Content holds, when asked for, the diff of each changed text file.
	Content []FileDiff `json:"content,omitempty"`
}

// FileDiff is the unified diff of one changed file; a binary file is named
// and not diffed; Truncated says a side was larger than the cap and only
// its start was compared.
type FileDiff struct {
	Path      string `json:"path"`
	Diff      string `json:"diff,omitempty"`
	Binary    bool   `json:"binary,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
}

// FSDiffStat counts the changes by kind, and the entries each side's
// guest listed (all of them for a walk; what the journals named otherwise).
type FSDiffStat struct {
	Added    int `json:"added"`
	Removed  int `json:"removed"`
	Changed  int `json:"changed"`
	EntriesA int `json:"entries_a"`
	EntriesB int `json:"entries_b"`
}

// Diff methods.
const (
	DiffJournal = "journal"
	DiffWalk    = "walk"
)

// Change kinds.
const (
	ChangeAdded   = "added"   // in B only
	ChangeRemoved = "removed" // in A only
	ChangeChanged = "changed"
)

// FSChange is one path that differs. What lists the aspects of a changed
// entry that differ: type, mode, owner, content, target.
type FSChange struct {
	Path string   `json:"path"`
	Kind string   `json:"kind"`
	What []string `json:"what,omitempty"`
	A    *FSEntry `json:"a,omitempty"`
	B    *FSEntry `json:"b,omitempty"`
	Note string   `json:"note,omitempty"`
}

// FSEntry is a file as one side has it. Mode is the octal permission bits
// with setuid, setgid and sticky ("0755", "4755").
type FSEntry struct {
	Type    string    `json:"type"` // file, dir, symlink, other
	Mode    string    `json:"mode"`
	UID     uint32    `json:"uid"`
	GID     uint32    `json:"gid"`
	Size    int64     `json:"size,omitempty"`
	ModTime time.Time `json:"mtime"`
	Target  string    `json:"target,omitempty"`
	SHA256  string    `json:"sha256,omitempty"`
}
