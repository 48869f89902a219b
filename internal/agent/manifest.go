package agent

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/yamux"
)

// ManifestRequest asks the guest to describe the trees under Roots: every
// entry's type, mode, owner, size, times and inode, without following
// symbolic links and without leaving each root's filesystem. Entries at or
// under an Exclude path are left out, but for a root inside an excluded
// tree, which is walked. With Hash, every regular file's content is hashed
// too (slow: it reads everything).
//
// With Only, each root is listed by itself and nothing under it: a root
// that is missing, or whose path goes through a symbolic link or a
// non-directory, is left out (the journal's paths, vers diff).
type ManifestRequest struct {
	Roots   []string `json:"roots"`
	Exclude []string `json:"exclude,omitempty"`
	Hash    bool     `json:"hash,omitempty"`
	Only    bool     `json:"only,omitempty"`
}

// Entry types.
const (
	TypeFile    = "f"
	TypeDir     = "d"
	TypeSymlink = "l"
	TypeOther   = "o" // device, named pipe, socket
)

// Entry is one file of a manifest. Mode holds the permission bits with
// setuid, setgid and sticky (as in stat's st_mode & 07777). The stream's
// last message has End set and nothing else but Errors.
type Entry struct {
	Path  string `json:"p,omitempty"`
	Type  string `json:"t,omitempty"`
	Mode  uint32 `json:"m,omitempty"`
	UID   uint32 `json:"u,omitempty"`
	GID   uint32 `json:"g,omitempty"`
	Size  int64  `json:"s,omitempty"`
	MTime int64  `json:"mt,omitempty"` // ns since the epoch
	CTime int64  `json:"ct,omitempty"`
	Ino   uint64 `json:"i,omitempty"`
	Links uint64 `json:"k,omitempty"` // hard links of a regular file
	Link  string `json:"l,omitempty"` // a symlink's target, verbatim
	Sum   string `json:"h,omitempty"` // sha256 of a regular file's content, when asked
	// Err says why the entry could not be read (its directory's listing,
	// its content for a hash); the entry is still listed.
	Err string `json:"e,omitempty"`

	End    bool `json:"end,omitempty"`
	Errors int  `json:"errors,omitempty"`
}

// HashResult is the content hash of one path, or why there is none.
type HashResult struct {
	Path string `json:"p"`
	Sum  string `json:"h,omitempty"`
	Err  string `json:"e,omitempty"`
}

// maxHashBatch bounds the paths of one hash request, so the request stays
// far below maxMessage.
const maxHashBatch = 2000

// manifest answers a manifest request: a reply, then one message per entry,
// depth first with each directory's entries by name, then the end.
func (s *Server) manifest(st net.Conn, req *ManifestRequest) {
	if req == nil || len(req.Roots) == 0 {
		writeMsg(st, reply{Error: "manifest without roots", Code: codeInvalid})
		return
	}
	var roots, exclude []string
	for _, list := range []struct {
		in  []string
		out *[]string
	}{{req.Roots, &roots}, {req.Exclude, &exclude}} {
		for _, p := range list.in {
			if !filepath.IsAbs(p) {
				writeMsg(st, reply{Error: fmt.Sprintf("%q is not an absolute path", p), Code: codeInvalid})
				return
			}
			*list.out = append(*list.out, filepath.Clean(p))
		}
	}
	if err := writeMsg(st, reply{}); err != nil {
		return
	}
	w := &manifestWriter{w: bufio.NewWriterSize(st, 64<<10), hash: req.Hash}
	if req.Only {
		w.only(roots)
		roots = nil
	}
	for _, root := range roots {
		if w.err != nil {
			break
		}
		// A root inside an excluded tree was asked for by name: what
		// excludes it does not apply under it.
		w.exclude = slices.DeleteFunc(slices.Clone(exclude), func(x string) bool {
			return root == x || x == "/" || strings.HasPrefix(root, x+"/")
		})
		fi, err := os.Lstat(root)
		if err != nil {
			w.emit(Entry{Path: root, Err: err.Error()})
			continue
		}
		w.walk(root, fi, devOf(fi))
	}
	if w.err == nil {
		writeMsg(w.w, Entry{End: true, Errors: w.errors})
		w.w.Flush()
	}
}

type manifestWriter struct {
	w       *bufio.Writer
	hash    bool
	exclude []string
	errors  int
	err     error // the host went away: stop
}

func (w *manifestWriter) emit(e Entry) {
	if e.Err != "" {
		w.errors++
	}
	if w.err == nil {
		w.err = writeMsg(w.w, e)
	}
}

func (w *manifestWriter) excluded(p string) bool {
	return slices.ContainsFunc(w.exclude, func(x string) bool {
		return p == x || strings.HasPrefix(p, x+"/") || x == "/"
	})
}

// walk lists p and, for a directory on dev, what is under it.
func (w *manifestWriter) walk(p string, fi fs.FileInfo, dev uint64) {
	if w.err != nil || w.excluded(p) {
		return
	}
	e := entryOf(p, fi)
	if e.Type == TypeFile && w.hash {
		e.Sum, e.Err = hashErr(p)
	}
	if e.Type != TypeDir || devOf(fi) != dev {
		w.emit(e)
		return
	}
	names, err := readNames(p)
	if err != nil {
		e.Err = err.Error()
	}
	w.emit(e)
	for _, name := range names {
		child := filepath.Join(p, name)
		cfi, err := os.Lstat(child)
		if err != nil {
			if !os.IsNotExist(err) { // gone since the listing: not an entry
				w.emit(Entry{Path: child, Err: err.Error()})
			}
			continue
		}
		w.walk(child, cfi, dev)
	}
}

// only lists each path by itself, if it is there through directories only.
func (w *manifestWriter) only(paths []string) {
	dirs := map[string]bool{"/": true} // ancestors checked: is a real directory
	var isDir func(string) bool
	isDir = func(d string) bool {
		ok, seen := dirs[d]
		if !seen {
			fi, err := os.Lstat(d)
			ok = err == nil && fi.IsDir() && isDir(filepath.Dir(d))
			dirs[d] = ok
		}
		return ok
	}
	for _, p := range paths {
		if w.err != nil {
			return
		}
		if p != "/" && !isDir(filepath.Dir(p)) {
			continue
		}
		fi, err := os.Lstat(p)
		switch {
		case os.IsNotExist(err):
			continue
		case err != nil:
			w.emit(Entry{Path: p, Err: err.Error()})
			continue
		}
		e := entryOf(p, fi)
		if e.Type == TypeFile && w.hash {
			e.Sum, e.Err = hashErr(p)
		}
		w.emit(e)
	}
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	slices.Sort(names)
	return names, err
}

func entryOf(p string, fi fs.FileInfo) Entry {
	e := Entry{Path: p, Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		e.Mode = st.Mode & 0o7777
		e.UID, e.GID, e.Ino = st.Uid, st.Gid, st.Ino
		if fi.Mode().IsRegular() {
			e.Links = uint64(st.Nlink)
		}
		e.CTime = time.Unix(st.Ctim.Unix()).UnixNano()
	}
	switch m := fi.Mode(); {
	case m.IsRegular():
		e.Type = TypeFile
	case m.IsDir():
		e.Type, e.Size = TypeDir, 0
	case m&fs.ModeSymlink != 0:
		e.Type = TypeSymlink
		e.Link, _ = os.Readlink(p)
	default:
		e.Type, e.Size = TypeOther, 0
	}
	return e
}

func devOf(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Dev
	}
	return 0
}

// hashFile is the sha256 of a regular file's content; it never follows a
// symlink nor waits on a pipe put where the file was.
func hashFile(p string) (string, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", p)
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashErr(p string) (string, string) {
	sum, err := hashFile(p)
	if err != nil {
		return "", err.Error()
	}
	return sum, ""
}

// hashPaths answers a hash request: a reply, then one HashResult per path,
// in the order asked.
func (s *Server) hashPaths(st net.Conn, paths []string) {
	if len(paths) > maxHashBatch {
		writeMsg(st, reply{Error: fmt.Sprintf("%d paths in one hash request; at most %d", len(paths), maxHashBatch), Code: codeInvalid})
		return
	}
	if err := writeMsg(st, reply{}); err != nil {
		return
	}
	w := bufio.NewWriterSize(st, 64<<10)
	for _, p := range paths {
		r := HashResult{Path: p}
		if !filepath.IsAbs(p) {
			r.Err = "not an absolute path"
		} else {
			r.Sum, r.Err = hashErr(p)
		}
		if writeMsg(w, r) != nil {
			return
		}
	}
	w.Flush()
}

// Manifest streams the guest's manifest of req to fn, entry by entry, and
// returns how many entries could not be read. It is bound to ctx.
func (c *Client) Manifest(ctx context.Context, req ManifestRequest, fn func(Entry) error) (errors int, err error) {
	st, err := c.open(ctx, request{Op: opManifest, Manifest: &req})
	if err != nil {
		return 0, err
	}
	defer st.Close()
	var rep reply
	if err := c.readReply(ctx, st, &rep); err != nil {
		return 0, err
	}
	if err := rep.err("manifest"); err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() { st.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	r := bufio.NewReaderSize(st, 64<<10)
	for {
		var e Entry
		if err := readMsg(r, &e); err != nil {
			if ctx.Err() != nil {
				return 0, ctx.Err()
			}
			return 0, c.wrap(fmt.Errorf("manifest cut short: %w", unexpected(err)))
		}
		if e.End {
			return e.Errors, nil
		}
		if err := fn(e); err != nil {
			return 0, err
		}
	}
}

// Hash returns the content hashes of paths in the guest, in their order.
func (c *Client) Hash(ctx context.Context, paths []string) ([]HashResult, error) {
	out := make([]HashResult, 0, len(paths))
	for batch := range slices.Chunk(paths, maxHashBatch) {
		st, err := c.open(ctx, request{Op: opHash, Paths: batch})
		if err != nil {
			return nil, err
		}
		err = c.hashBatch(ctx, st, len(batch), &out)
		st.Close()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (c *Client) hashBatch(ctx context.Context, st *yamux.Stream, n int, out *[]HashResult) error {
	var rep reply
	if err := c.readReply(ctx, st, &rep); err != nil {
		return err
	}
	if err := rep.err("hash"); err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { st.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for range n {
		var r HashResult
		if err := readMsg(st, &r); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return c.wrap(fmt.Errorf("hash cut short: %w", unexpected(err)))
		}
		*out = append(*out, r)
	}
	return nil
}
