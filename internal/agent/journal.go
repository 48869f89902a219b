package agent

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The change journal: which paths of the root filesystem changed, and when,
// so that two VMs with a common past are compared on what either changed
// since, not on their whole trees (vers diff).
//
// The guest watches its root filesystem with fanotify (FAN_MARK_FILESYSTEM,
// reporting the parent directory and the name of each entry an event is
// about) from the moment the agent starts. The journal is a list of
// segments: the first is named at start; the host names a new one at every
// sync that follows a branch or a restore (SyncRequest.Epoch), in the child
// only, so a child's journal is its parent's up to the branch, then its own.
// Every path records the segment and the position in it of its last event.
// Two journals agree up to the last segment they both have, to the shorter
// of their two counts in it; what either changed after that point is all
// that can differ between them.
//
// The journal may say too much (an event read after the branch in one VM
// and before it in the other), never too little, except where fanotify
// says nothing: a file changed only through a shared writable mapping while
// it stays open is not seen, and a change made under another hard link of
// a file is recorded under that link's name only (vers diff falls back to
// a full walk when a file it looks at has other links). A queue overflow
// or too many paths marks the segment lost, and vers diff walks the trees.

// maxJournalPaths bounds the paths a journal remembers (they live in the
// guest's memory); beyond it, the current segment is lost.
const maxJournalPaths = 200_000

// Segment is one stretch of a journal: its name, how many events it holds,
// and whether events were lost in it.
type Segment struct {
	ID    string `json:"id"`
	Count uint64 `json:"count"`
	Lost  bool   `json:"lost,omitempty"`
}

// Changed is one path of a journal and its last event: the index of the
// segment and the position in it (1-based).
type Changed struct {
	Path string `json:"p"`
	Seg  int    `json:"s"`
	Pos  uint64 `json:"n"`
}

// JournalState is a journal as the host reads it. The stream's last
// message has End set.
type JournalState struct {
	Segments []Segment `json:"segments,omitempty"`
	Changed  *Changed  `json:"changed,omitempty"`
	End      bool      `json:"end,omitempty"`
}

type journalKey struct {
	dir  int // index into Journal.dirs
	name string
}

type journalMark struct {
	seg int
	pos uint64
}

// Journal records the changes of one filesystem.
type Journal struct {
	fd, mountFD int
	// wake is an eventfd that Close writes to, so that run can wait for
	// events with no timeout: an idle guest's agent wakes for nothing
	// (each wake-up of an idle guest costs its QEMU about a millisecond
	// of CPU under TCG, and a host runs many idle children).
	wake int
	logf func(string, ...any)

	mu       sync.Mutex
	segments []Segment
	dirIndex map[string]int // a directory's file handle → index
	dirs     []unix.FileHandle
	paths    map[journalKey]journalMark
	buf      []byte
	closed   bool
	done     chan struct{}
}

// StartJournal watches the filesystem of root and records its changes
// until the process ends. It needs CAP_SYS_ADMIN.
func StartJournal(root string, logf func(string, ...any)) (*Journal, error) {
	fd, err := unix.FanotifyInit(unix.FAN_CLASS_NOTIF|unix.FAN_REPORT_DFID_NAME|unix.FAN_UNLIMITED_QUEUE|unix.FAN_NONBLOCK|unix.FAN_CLOEXEC, unix.O_RDONLY|unix.O_LARGEFILE)
	if err != nil {
		return nil, fmt.Errorf("fanotify: %w", err)
	}
	const mask = unix.FAN_MODIFY | unix.FAN_ATTRIB | unix.FAN_CLOSE_WRITE | unix.FAN_CREATE | unix.FAN_DELETE |
		unix.FAN_MOVED_FROM | unix.FAN_MOVED_TO | unix.FAN_DELETE_SELF | unix.FAN_MOVE_SELF | unix.FAN_ONDIR
	if err := unix.FanotifyMark(fd, unix.FAN_MARK_ADD|unix.FAN_MARK_FILESYSTEM, mask, unix.AT_FDCWD, root); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("fanotify mark %s: %w", root, err)
	}
	mountFD, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(fd)
		unix.Close(mountFD)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if logf == nil {
		logf = func(string, ...any) {}
	}
	j := &Journal{fd: fd, mountFD: mountFD, wake: wake, logf: logf, dirIndex: map[string]int{},
		paths: map[journalKey]journalMark{}, buf: make([]byte, 64<<10),
		segments: []Segment{{ID: "start-" + strconv.FormatInt(time.Now().UnixNano(), 36)}}, done: make(chan struct{})}
	go j.run()
	return j, nil
}

// run reads events as they come, until Close.
func (j *Journal) run() {
	defer close(j.done)
	fds := []unix.PollFd{{Fd: int32(j.fd), Events: unix.POLLIN}, {Fd: int32(j.wake), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil && !errors.Is(err, unix.EINTR) {
			j.logf("journal: poll: %v", err)
			return
		}
		j.mu.Lock()
		if j.closed {
			j.mu.Unlock()
			return
		}
		j.drainLocked()
		j.mu.Unlock()
	}
}

// Close stops the journal and releases it.
func (j *Journal) Close() {
	j.mu.Lock()
	j.closed = true
	j.mu.Unlock()
	unix.Write(j.wake, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	<-j.done
	unix.Close(j.fd)
	unix.Close(j.mountFD)
	unix.Close(j.wake)
}

// drainLocked reads every event queued.
func (j *Journal) drainLocked() {
	for {
		n, err := unix.Read(j.fd, j.buf)
		if err != nil || n <= 0 {
			if err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EINTR) {
				j.logf("journal: read: %v", err)
				j.lostLocked()
			}
			return
		}
		j.parseLocked(j.buf[:n])
	}
}

func (j *Journal) lostLocked() { j.segments[len(j.segments)-1].Lost = true }

// parseLocked records a buffer of events: each a fanotify_event_metadata
// followed by info records; the ones wanted carry a directory's file
// handle and a name.
func (j *Journal) parseLocked(b []byte) {
	const metaLen = int(unix.FAN_EVENT_METADATA_LEN)
	for len(b) >= metaLen {
		evLen := int(binary.NativeEndian.Uint32(b[0:4]))
		if evLen < metaLen || evLen > len(b) {
			j.lostLocked()
			return
		}
		mask := binary.NativeEndian.Uint64(b[8:16])
		hdrLen := int(binary.NativeEndian.Uint16(b[6:8]))
		if mask&unix.FAN_Q_OVERFLOW != 0 {
			j.lostLocked()
		} else {
			j.infoLocked(b[hdrLen:evLen])
		}
		b = b[evLen:]
	}
}

// infoLocked records the entry an event's info records name.
func (j *Journal) infoLocked(info []byte) {
	for len(info) >= 4 {
		typ, recLen := info[0], int(binary.NativeEndian.Uint16(info[2:4]))
		if recLen < 4 || recLen > len(info) {
			return
		}
		rec := info[4:recLen]
		info = info[recLen:]
		if typ != unix.FAN_EVENT_INFO_TYPE_DFID_NAME && typ != unix.FAN_EVENT_INFO_TYPE_DFID && typ != unix.FAN_EVENT_INFO_TYPE_FID {
			continue
		}
		// fsid (8 bytes), then struct file_handle: handle_bytes, handle_type, f_handle.
		if len(rec) < 16 {
			continue
		}
		hb := int(binary.NativeEndian.Uint32(rec[8:12]))
		htype := int32(binary.NativeEndian.Uint32(rec[12:16]))
		if 16+hb > len(rec) {
			continue
		}
		handle := rec[16 : 16+hb]
		name := "."
		if typ == unix.FAN_EVENT_INFO_TYPE_DFID_NAME {
			rest := rec[16+hb:]
			for i, c := range rest {
				if c == 0 {
					rest = rest[:i]
					break
				}
			}
			if len(rest) > 0 {
				name = string(rest)
			}
		}
		j.recordLocked(htype, handle, name)
		return
	}
}

func (j *Journal) recordLocked(htype int32, handle []byte, name string) {
	key := strconv.Itoa(int(htype)) + ":" + string(handle)
	dir, ok := j.dirIndex[key]
	if !ok {
		dir = len(j.dirs)
		j.dirIndex[key] = dir
		j.dirs = append(j.dirs, unix.NewFileHandle(htype, append([]byte(nil), handle...)))
	}
	seg := len(j.segments) - 1
	j.segments[seg].Count++
	k := journalKey{dir, name}
	if _, known := j.paths[k]; !known && len(j.paths) >= maxJournalPaths {
		j.lostLocked()
		return
	}
	j.paths[k] = journalMark{seg, j.segments[seg].Count}
}

// Mark begins a new segment named id, after every event queued so far.
func (j *Journal) Mark(id string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.drainLocked()
	j.segments = append(j.segments, Segment{ID: id})
}

// State drains the queue and returns the segments and every path with its
// last event. Paths whose directory is gone are left out: the directory's
// own removal is recorded under its parent.
func (j *Journal) State() ([]Segment, []Changed) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.drainLocked()
	segs := append([]Segment(nil), j.segments...)
	dirPaths := make([]string, len(j.dirs))
	resolved := make([]bool, len(j.dirs))
	var out []Changed
	for k, m := range j.paths {
		if !resolved[k.dir] {
			resolved[k.dir] = true
			dirPaths[k.dir] = j.resolve(j.dirs[k.dir])
		}
		d := dirPaths[k.dir]
		if d == "" {
			continue
		}
		p := d
		if k.name != "." {
			p = filepath.Join(d, k.name)
		}
		out = append(out, Changed{Path: p, Seg: m.seg, Pos: m.pos})
	}
	return segs, out
}

// resolve is the path of a directory's handle now, or "" if it is gone.
func (j *Journal) resolve(h unix.FileHandle) string {
	fd, err := unix.OpenByHandleAt(j.mountFD, h, unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		return ""
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Nlink == 0 {
		return "" // removed: its removal is its parent's event
	}
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil || !filepath.IsAbs(p) {
		return ""
	}
	return p
}

// journal answers a journal request: a reply, the segments, one message
// per path, the end.
func (s *Server) journal(st net.Conn) {
	if s.cfg.Journal == nil {
		writeMsg(st, reply{Error: "this guest keeps no change journal", Code: codeInvalid})
		return
	}
	segs, changed := s.cfg.Journal.State()
	if writeMsg(st, reply{}) != nil {
		return
	}
	w := bufio.NewWriterSize(st, 64<<10)
	if writeMsg(w, JournalState{Segments: segs}) != nil {
		return
	}
	for i := range changed {
		if writeMsg(w, JournalState{Changed: &changed[i]}) != nil {
			return
		}
	}
	writeMsg(w, JournalState{End: true})
	w.Flush()
}

// Journal reads the guest's change journal: its segments and every path
// with its last event.
func (c *Client) Journal(ctx context.Context) ([]Segment, []Changed, error) {
	st, err := c.open(ctx, request{Op: opJournal})
	if err != nil {
		return nil, nil, err
	}
	defer st.Close()
	var rep reply
	if err := c.readReply(ctx, st, &rep); err != nil {
		return nil, nil, err
	}
	if err := rep.err("journal"); err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { st.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	r := bufio.NewReaderSize(st, 64<<10)
	var segs []Segment
	var changed []Changed
	for {
		var m JournalState
		if err := readMsg(r, &m); err != nil {
			if ctx.Err() != nil {
				return nil, nil, ctx.Err()
			}
			return nil, nil, c.wrap(fmt.Errorf("journal cut short: %w", unexpected(err)))
		}
		switch {
		case m.End:
			return segs, changed, nil
		case m.Changed != nil:
			changed = append(changed, *m.Changed)
		default:
			segs = m.Segments
		}
	}
}
