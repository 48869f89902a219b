// Package agent is the one definition of the channel between versd and the
// vers-agent running as PID 1 inside every VM: the guest server (exec, PTY,
// files, clock and entropy sync) and the host client the daemon uses.
//
// # Wire protocol
//
// One byte stream (a virtio-serial port named "vers.agent" in the guest, a
// unix socket on the host) carries a hashicorp/yamux session. The host is the
// yamux client and opens every stream; the guest is the yamux server and only
// accepts. Each stream begins with one request header and the guest answers
// with one reply; both are messages: a 4-byte big-endian length followed by
// that many bytes of JSON. Length prefixes, not newlines, so that a reader
// never consumes bytes that belong to the raw data that may follow.
//
//	hello  request → reply{Version}
//	info   request → reply{Info}           (waits until the guest is fully up)
//	sync   request{Sync} → reply{}
//	read   request{Path} → reply{File} then chunks (see below)
//	write  request{Path,Mode} then chunks → reply{}; the reply may come
//	       early, before the end marker (no space, a directory): the host
//	       then stops sending and closes the stream
//	readtree  request{Path} → reply{} then chunks of a tar archive of the
//	       directory (see tree.go), then a closing reply: {} when the
//	       archive is whole, {Error} when the walk failed part way
//	writetree request{Path,Name} then chunks of a tar archive → reply{Tree};
//	       early on failure, as write
//	exec   request{ID,Exec} → reply{} when started, then events; the host
//	       sends control messages (resize, signal) on the same stream
//	stdio  request{ID,FD}: raw data of fd 0, 1 or 2 of the exec with that ID
//	manifest request{Manifest} → reply{}, then one Entry message per file
//	       of the trees, then an Entry with End (manifest.go)
//	hash   request{Paths} → reply{}, then one HashResult message per path
//	journal request → reply{}, then JournalState messages: the segments,
//	       one per changed path, the end (journal.go)
//	dial   request{Addr} → reply{} once the guest is connected to the TCP
//	       address Addr, then the connection's bytes as chunks both ways
//	       (dial.go: the end marker is a half-close, an early stream end a reset)
//
// An exec uses one control stream and one stream per standard file
// (stdin and stdout; stderr too unless it runs on a TTY), so each has its own
// yamux flow control: a client that reads stdout and stderr at different
// speeds never blocks the other, and many execs run side by side. The guest
// sends the exit event only after stdout and stderr were fully written and
// closed. Closing the control stream before the exit event abandons the
// process: the guest kills its process group. When the host session ends
// (daemon restart, VM branched onto a new socket) every process of that
// session is killed the same way and the guest waits for the next host.
//
// Before its session a host writes a session mark (mark.go), and the guest
// starts a session only after a mark: a branch child resumes inside its
// parent's session as it was at the freeze, with perhaps part of a frame
// from the parent's host in its port; the child's host's mark ends that
// session, the parent's commands with it, and begins the child's own.
//
// File contents travel as chunks: a 4-byte big-endian length and that many
// bytes; a zero length ends the file. A stream that ends without the zero
// chunk is a truncated transfer, never a short file. A file is read to its
// end, whatever size stat gave when it was opened (files in /proc say 0, a
// log grows while it is sent): FileInfo.Size is a hint. Only regular files
// are transferred; a directory, named pipe, socket or device is refused
// before it is opened for reading, since opening a pipe waits for a writer.
// Either side closing a file stream early ends the transfer on the other:
// the guest stops reading a file nobody reads, and removes a file whose
// sender went away.
//
// The package never trusts the other side to be alive: every wait is bounded
// by a context or by the session's end.
package agent

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"vers/internal/errdefs"
)

// Version is the agent's version, reported by hello and Info. The build sets
// it with -ldflags "-X vers/internal/agent.Version=...".
var Version = "dev"

// Errors returned by the client. Compare with errors.Is. ErrNotFound,
// ErrInvalid and ErrNoSpace are also the matching errdefs kinds, so that the
// daemon classifies them without a table of its own.
var (
	// ErrNotFound: a file or directory is missing in the guest.
	ErrNotFound error = &kind{"not found", errdefs.ErrNotFound}
	// ErrInvalid: a request the guest refused (malformed, or a path that is
	// not a regular file).
	ErrInvalid error = &kind{"invalid input", errdefs.ErrInvalid}
	// ErrNoSpace: the guest's filesystem is full.
	ErrNoSpace error = &kind{"no space left", errdefs.ErrNoSpace}
	// ErrClosed: the host session with the guest has ended.
	ErrClosed = errors.New("agent session closed")
	// ErrProtocol: the other side sent something this version does not understand.
	ErrProtocol = errors.New("agent protocol error")
)

// kind is a package error that is one of the errdefs kinds too. Its text is
// the kind's, so that errdefs.Message drops it from a message.
type kind struct {
	msg string
	of  error
}

func (k *kind) Error() string { return k.msg }
func (k *kind) Unwrap() error { return k.of }

// maxMessage bounds a JSON message so a corrupt length cannot make either
// side allocate gigabytes.
const maxMessage = 1 << 20

// maxChunk is the largest file chunk a sender produces.
const maxChunk = 64 << 10

// Operation names carried in request.Op.
const (
	opHello = "hello"
	opInfo  = "info"
	opSync  = "sync"
	opRead  = "read"
	opWrite = "write"
	// readtree and writetree: tree.go.
	opReadTree  = "readtree"
	opWriteTree = "writetree"
	opExec      = "exec"
	opStdio     = "stdio"

	opManifest = "manifest"
	opHash     = "hash"
	opJournal  = "journal"
	opDial     = "dial"
)

// Error codes carried in reply.Code, mapped back to package errors.
const (
	codeNotFound = "not_found"
	codeInvalid  = "invalid"
	codeNoSpace  = "no_space"
)

// Info describes the running guest.
type Info struct {
	Version  string        `json:"version"`
	Hostname string        `json:"hostname"`
	Kernel   string        `json:"kernel"`
	BootID   string        `json:"boot_id"`
	Uptime   time.Duration `json:"uptime"`
	// Time is the guest's clock as the reply was made.
	Time time.Time `json:"time"`
}

// SyncRequest brings a guest in line with the host: after boot and after
// every branch, so that clones never share a clock skew or an RNG state.
type SyncRequest struct {
	// Time is the host's clock as the request was sent; the guest sets its
	// own to it plus the time the request waited in the guest.
	Time time.Time `json:"time"`
	// Adjust, when not zero, moves the guest's clock by that much from
	// where it is (after Time): a correction measured by the host, which
	// no transit delay spoils.
	Adjust   time.Duration `json:"adjust,omitempty"`
	Entropy  []byte        `json:"entropy,omitempty"`
	Hostname string        `json:"hostname,omitempty"`
	// Epoch, when set, begins a segment of that name in the guest's
	// change journal: the host sets it in a VM that has just been made
	// from another's state (a branch child, a restore).
	Epoch string `json:"epoch,omitempty"`
	// MachineID, when set, is written to /etc/machine-id if it says
	// otherwise: each VM has its own, a branch child a new one.
	MachineID string `json:"machine_id,omitempty"`
	// ResetTCP is set for a guest that has just been made from a saved
	// state: the peers of its TCP connections to other machines know
	// nothing of this copy, so each is reset (the application sees
	// ECONNRESET and can reconnect) instead of waiting on a peer that will
	// never answer.
	ResetTCP bool `json:"reset_tcp,omitempty"`
}

// ExecRequest describes a process to start in the guest.
type ExecRequest struct {
	Argv    []string      `json:"argv,omitempty"`    // program and args; ignored if Shell != ""
	Shell   string        `json:"shell,omitempty"`   // run as: bash -c SHELL (sh if there is no bash)
	Login   bool          `json:"login,omitempty"`   // with TTY and no Argv/Shell: interactive login shell
	Env     []string      `json:"env,omitempty"`     // KEY=VALUE over the default environment
	Dir     string        `json:"dir,omitempty"`     // working directory (default /root)
	Timeout time.Duration `json:"timeout,omitempty"` // 0 = none; on expiry the process group is killed
	TTY     bool          `json:"tty,omitempty"`     // run on a PTY; no separate stderr
	Rows    uint16        `json:"rows,omitempty"`
	Cols    uint16        `json:"cols,omitempty"`
	Term    string        `json:"term,omitempty"` // TERM for TTY (default xterm-256color)
	// FixedLayout starts the program without address-space randomization
	// (ADDR_NO_RANDOMIZE, as setarch -R does); its descendants inherit it.
	// Under TCG, QEMU translates a program's code again for every address
	// it is loaded at, so a randomized process start costs ~4x a fixed one.
	FixedLayout bool `json:"fixed_layout,omitempty"`
}

// Result is how a process ended. A process killed by a signal has
// ExitCode 128+signo and Signal set to the signal's name (e.g. "SIGKILL").
type Result struct {
	ExitCode int    `json:"exit_code"`
	Signal   string `json:"signal,omitempty"`
	TimedOut bool   `json:"timed_out,omitempty"`
}

// FileInfo describes a file read from the guest.
type FileInfo struct {
	Size    int64       `json:"size"` // at open time; a hint, the data goes to the end marker
	Mode    os.FileMode `json:"mode"`
	ModTime time.Time   `json:"mod_time"`
}

// request is the header that opens every stream.
type request struct {
	Op   string       `json:"op"`
	ID   string       `json:"id,omitempty"`
	FD   int          `json:"fd,omitempty"`
	Exec *ExecRequest `json:"exec,omitempty"`
	Sync *SyncRequest `json:"sync,omitempty"`
	Path string       `json:"path,omitempty"`
	Addr string       `json:"addr,omitempty"` // dial: HOST:PORT as the guest reaches it
	Mode os.FileMode  `json:"mode,omitempty"`
	Name string       `json:"name,omitempty"` // writetree: the copy's name in an existing Path

	Manifest *ManifestRequest `json:"manifest,omitempty"`
	Paths    []string         `json:"paths,omitempty"`
}

// reply is the guest's first answer on a stream.
type reply struct {
	Error   string      `json:"error,omitempty"`
	Code    string      `json:"code,omitempty"`
	Version string      `json:"version,omitempty"`
	Info    *Info       `json:"info,omitempty"`
	File    *FileInfo   `json:"file,omitempty"`
	Tree    *TreeResult `json:"tree,omitempty"`
	// Clock is the guest's clock as it answered a sync.
	Clock *time.Time `json:"clock,omitempty"`
}

// err turns a failed reply into an error wrapping the matching package
// error. what prefixes the guest's message unless it is empty (the file
// operations: the guest's messages name the path already).
func (r reply) err(what string) error {
	if r.Error == "" {
		return nil
	}
	msg := r.Error
	if what != "" {
		msg = what + ": " + msg
	}
	switch r.Code {
	case codeNotFound:
		return fmt.Errorf("%s: %w", msg, ErrNotFound)
	case codeInvalid:
		return fmt.Errorf("%s: %w", msg, ErrInvalid)
	case codeNoSpace:
		return fmt.Errorf("%s: %w", msg, ErrNoSpace)
	}
	return errors.New(msg)
}

// control is a message from host to guest on an exec's control stream.
type control struct {
	Resize *winsize `json:"resize,omitempty"`
	Signal int      `json:"signal,omitempty"`
}

type winsize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// event is a message from guest to host on an exec's control stream after
// the start reply. Exit is the last one.
type event struct {
	Exit *Result `json:"exit,omitempty"`
}

// writeMsg sends v as one length-prefixed JSON message.
func writeMsg(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// readMsg reads one length-prefixed JSON message into v. A clean end of
// stream before the message is io.EOF.
func readMsg(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxMessage {
		return fmt.Errorf("message of %d bytes: %w", n, ErrProtocol)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return unexpected(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%v: %w", err, ErrProtocol)
	}
	return nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// sendChunks copies r to w as chunks and ends with the zero chunk. It stops
// without the end marker if r fails, so the receiver sees a truncation.
func sendChunks(w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, 4+maxChunk)
	var total int64
	for {
		n, err := r.Read(buf[4:])
		if n > 0 {
			binary.BigEndian.PutUint32(buf, uint32(n))
			if _, werr := w.Write(buf[:4+n]); werr != nil {
				return total, werr
			}
			total += int64(n)
		}
		if err == io.EOF {
			binary.BigEndian.PutUint32(buf, 0)
			_, werr := w.Write(buf[:4])
			return total, werr
		}
		if err != nil {
			return total, err
		}
	}
}

// chunkReader reads the data sent by sendChunks. It returns io.EOF only after
// the end marker; a stream that stops earlier is io.ErrUnexpectedEOF.
type chunkReader struct {
	r    io.Reader
	left uint32
	done bool
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	if c.left == 0 {
		var hdr [4]byte
		if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
			return 0, unexpected(err)
		}
		c.left = binary.BigEndian.Uint32(hdr[:])
		if c.left == 0 {
			c.done = true
			return 0, io.EOF
		}
		if c.left > maxChunk {
			return 0, fmt.Errorf("chunk of %d bytes: %w", c.left, ErrProtocol)
		}
	}
	if uint32(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= uint32(n)
	if err == io.EOF {
		if c.left > 0 {
			return n, io.ErrUnexpectedEOF
		}
		err = nil
	}
	return n, err
}
