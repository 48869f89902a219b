package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"vers/internal/dirtar"
)

// Directory trees (vers cp -r) travel as tar archives (package dirtar) in
// chunks, like files. readtree ends its chunks with a closing reply, since
// a walk can fail after the archive began: the host's reader returns the
// guest's reason instead of the end. writetree extracts under an os.Root of
// the destination, so an archive cannot write outside it; the host that
// sends it is trusted no less than for write, the confinement is the same
// code the host applies to what a guest sends.

// TreeResult is what writetree made: the directory (Path itself, or
// Path/Name when Path was a directory already) and what it holds.
type TreeResult struct {
	Path string `json:"path"`
	dirtar.Stats
}

// readTree answers a readtree request: an empty reply, the archive as
// chunks, the closing reply.
func (s *Server) readTree(st net.Conn, path string) {
	p, err := s.treeSource(path)
	if err != nil {
		writeMsg(st, replyFor(err, reply{}))
		return
	}
	if err := writeMsg(st, reply{}); err != nil {
		return
	}
	// As readFile: a host that closes the stream stops the walk.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	gone := make(chan struct{})
	go func() {
		defer close(gone)
		io.Copy(io.Discard, st)
		cancel()
		st.SetWriteDeadline(time.Unix(1, 0))
	}()
	pr, pw := io.Pipe()
	walked := make(chan error, 1)
	go func() {
		_, err := dirtar.Write(ctx, pw, p)
		pw.CloseWithError(err)
		walked <- err
	}()
	src := &untilError{r: pr}
	if _, err := sendChunks(st, src); err == nil {
		writeMsg(st, replyFor(treeErr(p, src.err), reply{}))
	} else {
		s.cfg.Logf("readtree %s: %v", p, err)
	}
	pr.CloseWithError(io.ErrClosedPipe)
	if err := <-walked; err != nil {
		s.cfg.Logf("readtree %s: %v", p, err)
	}
	st.SetReadDeadline(time.Unix(1, 0))
	<-gone
}

// treeSource checks that path is a directory, before any reply.
func (s *Server) treeSource(path string) (string, error) {
	p, err := s.guestPath(path)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%s is not a directory; copy a file without -r: %w", p, ErrInvalid)
	}
	return p, nil
}

// untilError reads r and ends at its first error, kept in err, so that the
// chunks end and the closing reply says why.
type untilError struct {
	r   io.Reader
	err error
}

func (u *untilError) Read(p []byte) (int, error) {
	if u.err != nil {
		return 0, io.EOF
	}
	n, err := u.r.Read(p)
	if err != nil && err != io.EOF {
		u.err = err
		err = io.EOF
	}
	return n, err
}

// writeTree extracts the archive sent as chunks and answers with what it
// made, or at once when it fails (the host stops sending then).
func (s *Server) writeTree(st io.ReadWriter, path, name string) {
	res, err := s.receiveTree(st, path, name)
	if err != nil {
		s.cfg.Logf("writetree: %v", err)
	}
	writeMsg(st, replyFor(err, reply{Tree: &res}))
}

func (s *Server) receiveTree(st io.Reader, path, name string) (TreeResult, error) {
	var res TreeResult
	p, err := s.guestPath(path)
	if err != nil {
		return res, err
	}
	if name == "." || name == ".." || strings.Contains(name, "/") {
		return res, fmt.Errorf("%q is no name for a directory: %w", name, ErrInvalid)
	}
	res.Path = p
	switch fi, err := os.Stat(p); {
	case err == nil && fi.IsDir() && name != "":
		res.Path = filepath.Join(p, name)
	case err == nil && !fi.IsDir():
		return res, fmt.Errorf("%s is a file; give a directory to copy into, or a new name: %w", p, ErrInvalid)
	}
	// The stream's end ends the extraction: a host that goes away cuts it.
	cr := &chunkReader{r: st}
	res.Stats, err = dirtar.Extract(context.Background(), cr, res.Path, dirtar.Options{KeepSetid: true})
	if err == nil {
		// To the end marker: only it says the archive was not cut.
		_, err = io.Copy(io.Discard, cr)
	}
	return res, treeErr(res.Path, err)
}

// treeErr classifies a failure of a tree copy for the reply.
func treeErr(p string, err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT):
		return fmt.Errorf("%s: the filesystem is full; the files copied before stay: free space in the VM and copy again: %w", p, ErrNoSpace)
	case errors.Is(err, dirtar.ErrUnsafe):
		return fmt.Errorf("%s: %v: %w", p, err, ErrInvalid)
	}
	return fmt.Errorf("%s: %w", p, err)
}

// ReadTree streams the directory path in the guest as a tar archive (see
// package dirtar), to its end. The caller must close the reader; it fails
// with the guest's reason when the walk fails part way, with
// io.ErrUnexpectedEOF when the transfer is cut, and with ctx's error when
// ctx ends (the guest then stops).
func (c *Client) ReadTree(ctx context.Context, path string) (io.ReadCloser, error) {
	f, _, err := c.download(ctx, request{Op: opReadTree, Path: path})
	if err != nil {
		return nil, err
	}
	return &treeReader{fileReader: f}, nil
}

// treeReader is a fileReader whose end is the closing reply's.
type treeReader struct {
	*fileReader
	err error
}

func (t *treeReader) Read(p []byte) (int, error) {
	if t.err != nil {
		return 0, t.err
	}
	n, err := t.fileReader.Read(p)
	if err == io.EOF {
		var rep reply
		if err = readMsg(t.st, &rep); err == nil {
			err = rep.err("")
		} else if t.ctx.Err() != nil {
			err = t.ctx.Err()
		} else {
			err = t.c.wrap(unexpected(err))
		}
		if err == nil {
			err = io.EOF
		}
		t.err = err
	}
	return n, err
}

// WriteTree extracts the tar archive r into the guest: into path/name when
// path is a directory there, as path otherwise (created with its parents).
// Everything lands under that directory, whatever r holds. A failure (a
// full filesystem, an unsafe entry) keeps what was written before it,
// whole files only, and ends the transfer at once.
func (c *Client) WriteTree(ctx context.Context, path, name string, r io.Reader) (TreeResult, error) {
	rep, err := c.upload(ctx, request{Op: opWriteTree, Path: path, Name: name}, r)
	if err != nil {
		return TreeResult{}, err
	}
	if rep.Tree == nil {
		return TreeResult{}, fmt.Errorf("writetree %s: no result: %w", path, ErrProtocol)
	}
	return *rep.Tree, nil
}
